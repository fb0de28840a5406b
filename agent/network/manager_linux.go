package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// Options configure a Manager.
type Options struct {
	// Handle is the netlink handle of the namespace to manage. Nil means
	// the agent's own namespace, with a handle opened on first use.
	Handle *netlink.Handle
	// IPTables runs iptables-save/-restore; the zero value uses PATH.
	IPTables IPTables
	// Log defaults to slog.Default().
	Log *slog.Logger
	// NICs waits for a hot-plugged NIC named by its device path
	// (Interface.devicePath); nil does not wait (a development host).
	NICs NICWaiter
}

// NICWaiter waits, bounded by the hot-plug timeout, for the network
// interface of the device at a PCI path and returns its name
// (*device.Waiter implements it).
type NICWaiter interface {
	NetPCI(ctx context.Context, pciPath string) (string, error)
}

// Manager applies the runtime's network requests to one namespace.
// Netlink changes are serialised so that a snapshot taken for a rollback
// is not invalidated by a concurrent request.
type Manager struct {
	mu     sync.Mutex
	handle *netlink.Handle
	owned  bool
	ipt    IPTables
	log    *slog.Logger
	nics   NICWaiter
}

// New builds a Manager. It opens nothing until the first request.
func New(opts Options) *Manager {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	return &Manager{handle: opts.Handle, ipt: opts.IPTables, log: log, nics: opts.NICs}
}

// Close releases a handle the Manager opened itself.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.owned && m.handle != nil {
		m.handle.Close()
		m.handle = nil
	}
}

// nl returns the netlink handle, opening one in the current namespace on
// first use. Callers hold m.mu.
func (m *Manager) nl() (*netlink.Handle, error) {
	if m.handle != nil {
		return m.handle, nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	m.handle, m.owned = h, true
	return h, nil
}

// classified keeps an error's message and adds an errdefs class to it.
type classified struct{ err, class error }

func (c classified) Error() string   { return c.err.Error() }
func (c classified) Unwrap() []error { return []error{c.err, c.class} }

// sysErr classifies a kernel error by its errno.
func sysErr(err error) error {
	var class error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ERANGE), errors.Is(err, unix.EAFNOSUPPORT), errors.Is(err, unix.ENETUNREACH):
		class = errdefs.ErrInvalidArgument
	case errors.Is(err, unix.ENETDOWN):
		class = errdefs.ErrFailedPrecondition
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		class = errdefs.ErrNotFound
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.EADDRINUSE):
		class = errdefs.ErrAlreadyExists
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		class = errdefs.ErrPermissionDenied
	case errors.Is(err, unix.EBUSY):
		class = errdefs.ErrUnavailable
	default:
		return err
	}
	return classified{err, class}
}

// dump retries a netlink dump the kernel interrupted because the table
// changed while it was read.
func dump[T any](f func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var v []T
		if v, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return nil, err
}

// ---- interfaces ----

// linkNotFound is the error for an unknown hardware address. The runtime
// retries UpdateInterface while the message contains "Link not found"
// (the device may still be hot-plugging), so the text keeps upstream's.
func linkNotFound(hw net.HardwareAddr) error {
	return fmt.Errorf("update interface: Link not found (Address: %s): %w", hw, errdefs.ErrNotFound)
}

// linkState is what UpdateInterface may change on a link, saved for
// rollback.
type linkState struct {
	index  int
	name   string
	mtu    int
	up     bool
	noARP  bool
	addrs  []netlink.Addr
	routes []netlink.Route
}

func (m *Manager) saveLink(h *netlink.Handle, l netlink.Link) (linkState, error) {
	a := l.Attrs()
	s := linkState{index: a.Index, name: a.Name, mtu: a.MTU, up: a.Flags&net.FlagUp != 0, noARP: a.RawFlags&unix.IFF_NOARP != 0}
	addrs, err := dump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return s, fmt.Errorf("list addresses of %s: %w", a.Name, sysErr(err))
	}
	s.addrs = addrs
	routes, err := m.managedRoutes(h, map[int]bool{a.Index: true})
	if err != nil {
		return s, err
	}
	s.routes = routes
	return s, nil
}

// UpdateInterface configures the link whose hardware address matches
// iface.HwAddr: name, MTU, addresses (replacing the existing ones), the
// NOARP flag from raw_flags, and brings it up. It returns the resulting
// interface. On any failure the link is put back as it was. With a device
// path, the NIC at that path is first awaited, as it may still be
// arriving from a hot-plug.
func (m *Manager) UpdateInterface(ctx context.Context, iface *typespb.Interface) (*typespb.Interface, error) {
	plan, err := parseInterface(iface)
	if err != nil {
		return nil, err
	}
	if p := iface.GetDevicePath(); p != "" && m.nics != nil {
		// Not under m.mu: other requests go on while this NIC arrives.
		if _, err := m.nics.NetPCI(ctx, p); err != nil {
			return nil, fmt.Errorf("interface %q (%s): device at %q not available: %w", plan.Name, plan.HwAddr, p, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h, links, err := m.linksLocked()
	if err != nil {
		return nil, err
	}
	var link, holder netlink.Link
	for _, l := range links {
		if bytes.Equal(l.Attrs().HardwareAddr, plan.HwAddr) && (link == nil || l.Attrs().Name == plan.Name) {
			link = l
		}
	}
	if link == nil {
		return nil, linkNotFound(plan.HwAddr)
	}
	for _, l := range links {
		if l.Attrs().Name == plan.Name && l.Attrs().Index != link.Attrs().Index {
			holder = l
		}
	}

	saved, err := m.saveLink(h, link)
	if err != nil {
		return nil, err
	}
	var savedHolder *linkState
	if holder != nil {
		s, err := m.saveLink(h, holder)
		if err != nil {
			return nil, err
		}
		savedHolder = &s
	}

	if err := m.applyInterface(h, link, holder, plan, saved); err != nil {
		rbErr := m.restoreLinks(h, saved, savedHolder)
		if rbErr != nil {
			m.log.Error("restore interface after failed update", "interface", saved.name, "error", rbErr)
			return nil, errors.Join(fmt.Errorf("update interface %s (%s): %w", saved.name, plan.HwAddr, err),
				fmt.Errorf("restoring its previous configuration also failed: %w", rbErr))
		}
		return nil, fmt.Errorf("update interface %s (%s), previous configuration restored: %w", saved.name, plan.HwAddr, err)
	}
	l, err := h.LinkByIndex(saved.index)
	if err != nil {
		return nil, fmt.Errorf("read back interface %s: %w", plan.Name, sysErr(err))
	}
	return m.describe(h, l, nil)
}

// applyInterface makes the changes; the caller restores on error.
func (m *Manager) applyInterface(h *netlink.Handle, link, holder netlink.Link, plan ifacePlan, saved linkState) error {
	rename := saved.name != plan.Name
	// A link must be down to be renamed. Taking it down flushes its routes,
	// so it is only done when needed.
	if rename && saved.up {
		if err := h.LinkSetDown(link); err != nil {
			return fmt.Errorf("set %s down: %w", saved.name, sysErr(err))
		}
	}
	if rename {
		if holder != nil {
			// Another link has the name: swap names, as upstream does.
			if holder.Attrs().Flags&net.FlagUp != 0 {
				if err := h.LinkSetDown(holder); err != nil {
					return fmt.Errorf("set %s down to free its name: %w", plan.Name, sysErr(err))
				}
			}
			tmp := "tmp" + strconv.Itoa(holder.Attrs().Index)
			if err := h.LinkSetName(holder, tmp); err != nil {
				return fmt.Errorf("rename %s to %s to free its name: %w", plan.Name, tmp, sysErr(err))
			}
		}
		if err := h.LinkSetName(link, plan.Name); err != nil {
			return fmt.Errorf("rename %s to %s: %w", saved.name, plan.Name, sysErr(err))
		}
		if holder != nil {
			if err := h.LinkSetName(holder, saved.name); err != nil {
				return fmt.Errorf("rename the previous %s to %s: %w", plan.Name, saved.name, sysErr(err))
			}
			if holder.Attrs().Flags&net.FlagUp != 0 {
				if err := h.LinkSetUp(holder); err != nil {
					return fmt.Errorf("set %s up again: %w", saved.name, sysErr(err))
				}
			}
		}
	}
	if saved.mtu != plan.MTU {
		if err := h.LinkSetMTU(link, plan.MTU); err != nil {
			return fmt.Errorf("set MTU %d: %w", plan.MTU, sysErr(err))
		}
	}
	// Read the addresses again: taking the link down for the rename drops
	// its IPv6 addresses (keep_addr_on_down is off by default).
	have, err := dump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("list addresses: %w", sysErr(err))
	}
	if err := m.replaceAddrs(h, link, have, plan.Addrs); err != nil {
		return err
	}
	if plan.NoARP != saved.noARP {
		set := h.LinkSetARPOn
		if plan.NoARP {
			set = h.LinkSetARPOff
		}
		if err := set(link); err != nil {
			return fmt.Errorf("set NOARP=%v: %w", plan.NoARP, sysErr(err))
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", plan.Name, sysErr(err))
	}
	return nil
}

// replaceAddrs removes the addresses not requested and adds the missing
// ones, leaving those already present (and the routes that depend on
// them) alone. IPv6 link-local addresses the kernel made are kept.
func (m *Manager) replaceAddrs(h *netlink.Handle, link netlink.Link, have []netlink.Addr, want []*net.IPNet) error {
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w.String()] = true
	}
	for _, a := range have {
		key := a.IPNet.String()
		if wanted[key] || (a.IP.To4() == nil && a.IP.IsLinkLocalUnicast()) {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove address %s: %w", key, sysErr(err))
		}
	}
	// Removing an IPv4 primary address also removes its secondaries, some
	// of which may be wanted: look again before adding.
	now, err := dump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("list addresses: %w", sysErr(err))
	}
	present := map[string]bool{}
	for _, a := range now {
		present[a.IPNet.String()] = true
	}
	for _, w := range want {
		if present[w.String()] {
			continue
		}
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: w}); err != nil {
			return fmt.Errorf("add address %s: %w", w, sysErr(err))
		}
	}
	return nil
}

// restoreLinks puts links back as saved, best effort, reporting every
// step that failed.
func (m *Manager) restoreLinks(h *netlink.Handle, saved linkState, holder *linkState) error {
	var errs []error
	states := []linkState{saved}
	if holder != nil {
		states = append(states, *holder)
	}
	// Free both names first so that the swap can be undone.
	for _, s := range states {
		l, err := h.LinkByIndex(s.index)
		if err != nil {
			errs = append(errs, fmt.Errorf("find link %d (%s): %w", s.index, s.name, err))
			continue
		}
		if l.Attrs().Name != s.name {
			_ = h.LinkSetDown(l)
			if holder != nil {
				if err := h.LinkSetName(l, "tmp"+strconv.Itoa(s.index)); err != nil {
					errs = append(errs, fmt.Errorf("rename %s aside: %w", l.Attrs().Name, err))
				}
			}
		}
	}
	for _, s := range states {
		l, err := h.LinkByIndex(s.index)
		if err != nil {
			continue
		}
		if l.Attrs().Name != s.name {
			_ = h.LinkSetDown(l)
			if err := h.LinkSetName(l, s.name); err != nil {
				errs = append(errs, fmt.Errorf("rename back to %s: %w", s.name, err))
			}
		}
		if l.Attrs().MTU != s.mtu {
			if err := h.LinkSetMTU(l, s.mtu); err != nil {
				errs = append(errs, fmt.Errorf("restore MTU %d of %s: %w", s.mtu, s.name, err))
			}
		}
		if err := m.restoreAddrs(h, l, s.addrs); err != nil {
			errs = append(errs, err)
		}
		set := h.LinkSetARPOn
		if s.noARP {
			set = h.LinkSetARPOff
		}
		if err := set(l); err != nil {
			errs = append(errs, fmt.Errorf("restore NOARP of %s: %w", s.name, err))
		}
		if s.up {
			if err := h.LinkSetUp(l); err != nil {
				errs = append(errs, fmt.Errorf("set %s up: %w", s.name, err))
			}
		} else if err := h.LinkSetDown(l); err != nil {
			errs = append(errs, fmt.Errorf("set %s down: %w", s.name, err))
		}
		for _, r := range orderForAdd(s.routes) {
			if err := h.RouteAdd(&r); err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("restore route %s: %w", r, err))
			}
		}
	}
	return errors.Join(errs...)
}

// restoreAddrs makes a link's addresses exactly the saved ones, with their
// saved attributes.
func (m *Manager) restoreAddrs(h *netlink.Handle, l netlink.Link, saved []netlink.Addr) error {
	list := func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) }
	cur, err := dump(list)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	var errs []error
	keep := map[string]bool{}
	for _, a := range saved {
		keep[a.IPNet.String()] = true
	}
	for _, a := range cur {
		if !keep[a.IPNet.String()] {
			if err := h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("remove address %s: %w", a.IPNet, err))
			}
		}
	}
	// Look again: removing a primary address takes its secondaries along.
	cur, err = dump(list)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err))...)
	}
	have := map[string]bool{}
	for _, a := range cur {
		have[a.IPNet.String()] = true
	}
	for _, a := range saved {
		if have[a.IPNet.String()] {
			continue
		}
		a.LinkIndex = 0
		if err := h.AddrAdd(l, &a); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("restore address %s: %w", a.IPNet, err))
		}
	}
	return errors.Join(errs...)
}

// describe converts a link to the protocol form; addrs, when non-nil, are
// all addresses of the namespace (to avoid one dump per link).
func (m *Manager) describe(h *netlink.Handle, l netlink.Link, addrs []netlink.Addr) (*typespb.Interface, error) {
	a := l.Attrs()
	if addrs == nil {
		var err error
		addrs, err = dump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", a.Name, sysErr(err))
		}
	}
	out := &typespb.Interface{
		Device:   a.Name,
		Name:     a.Name,
		Mtu:      uint64(a.MTU),
		HwAddr:   a.HardwareAddr.String(),
		Type:     l.Type(),
		RawFlags: a.RawFlags,
	}
	for _, ad := range addrs {
		if ad.LinkIndex != 0 && ad.LinkIndex != a.Index {
			continue
		}
		out.IPAddresses = append(out.IPAddresses, ipAddressOf(ad.IPNet))
	}
	return out, nil
}

// ListInterfaces describes every link of the namespace.
func (m *Manager) ListInterfaces(ctx context.Context) ([]*typespb.Interface, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h, links, err := m.linksLocked()
	if err != nil {
		return nil, err
	}
	addrs, err := dump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", sysErr(err))
	}
	byLink := map[int][]netlink.Addr{}
	for _, a := range addrs {
		byLink[a.LinkIndex] = append(byLink[a.LinkIndex], a)
	}
	out := make([]*typespb.Interface, 0, len(links))
	for _, l := range links {
		mine := byLink[l.Attrs().Index]
		if mine == nil {
			mine = []netlink.Addr{}
		}
		i, err := m.describe(h, l, mine)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}

// ---- routes ----

// managedRoutes lists the main-table routes UpdateRoutes owns: those
// through a link (other than loopback) that the kernel did not add itself.
// With only non-nil, just the routes through those link indexes.
func (m *Manager) managedRoutes(h *netlink.Handle, only map[int]bool) ([]netlink.Route, error) {
	links, err := listLinks(h)
	if err != nil {
		return nil, err
	}
	loopback := map[int]bool{}
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			loopback[l.Attrs().Index] = true
		}
	}
	all, err := dump(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", sysErr(err))
	}
	var out []netlink.Route
	for _, r := range all {
		if r.LinkIndex == 0 || loopback[r.LinkIndex] || r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST || len(r.MultiPath) > 0 {
			continue
		}
		if only != nil && !only[r.LinkIndex] {
			continue
		}
		// Flags other than onlink are state the kernel reports and
		// refuses on input (linkdown, dead).
		r.Flags &= unix.RTNH_F_ONLINK
		out = append(out, r)
	}
	return out, nil
}

// orderForAdd puts routes without a gateway before routes through one.
func orderForAdd(rs []netlink.Route) []netlink.Route {
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b netlink.Route) int {
		ag, bg := a.Gw != nil, b.Gw != nil
		switch {
		case ag == bg:
			return 0
		case !ag:
			return -1
		}
		return 1
	})
	return out
}

// UpdateRoutes replaces the routing table: every route UpdateRoutes
// manages (see managedRoutes) is removed and the requested ones are added,
// routes without gateway first. The whole request is validated first
// (devices exist, gateways reachable, sources local); if the kernel still
// refuses a route, the routes added are removed and the previous table is
// put back. It returns the resulting table (as ListRoutes).
func (m *Manager) UpdateRoutes(ctx context.Context, routes []*typespb.Route) ([]*typespb.Route, error) {
	plans, err := parseRoutes(routes)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h, links, err := m.linksLocked()
	if err != nil {
		return nil, err
	}
	byName := map[string]netlink.Link{}
	for _, l := range links {
		byName[l.Attrs().Name] = l
	}
	addrs, err := dump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", sysErr(err))
	}
	onLink := map[string][]*net.IPNet{}
	local := map[string]bool{}
	for _, a := range addrs {
		local[a.IP.String()] = true
		for _, l := range links {
			if l.Attrs().Index != a.LinkIndex {
				continue
			}
			onLink[l.Attrs().Name] = append(onLink[l.Attrs().Name], &net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask})
			if a.Peer != nil {
				onLink[l.Attrs().Name] = append(onLink[l.Attrs().Name], a.Peer)
			}
		}
	}
	nlRoutes := make([]netlink.Route, 0, len(plans))
	for _, p := range plans {
		l, ok := byName[p.Device]
		if !ok {
			return nil, fmt.Errorf("route %d (%s): device %q: Link not found: %w", p.Pos, p, p.Device, errdefs.ErrNotFound)
		}
		if p.Src != nil && !local[p.Src.String()] {
			return nil, hostinput.Invalid("route %d (%s): source %s is not an address of this guest", p.Pos, p, p.Src)
		}
		nlRoutes = append(nlRoutes, toNetlinkRoute(p, l.Attrs().Index))
	}
	if err := checkGateways(plans, onLink); err != nil {
		return nil, err
	}

	// A route the kernel already made for an address (proto kernel) is
	// kept as it is; adding it again would duplicate it for IPv6, where
	// the kernel's metric differs from the default one.
	all, err := dump(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", sysErr(err))
	}
	kernel := map[string]bool{}
	for _, r := range all {
		if r.Protocol == unix.RTPROT_KERNEL && r.Gw == nil && r.Dst != nil {
			kernel[strconv.Itoa(r.LinkIndex)+" "+r.Dst.String()] = true
		}
	}
	nlRoutes = slices.DeleteFunc(nlRoutes, func(r netlink.Route) bool {
		return r.Gw == nil && r.Src == nil && kernel[strconv.Itoa(r.LinkIndex)+" "+r.Dst.String()]
	})

	old, err := m.managedRoutes(h, nil)
	if err != nil {
		return nil, err
	}
	if err := m.replaceRoutes(h, old, nlRoutes); err != nil {
		return nil, err
	}
	return m.listRoutes(h)
}

func toNetlinkRoute(p routePlan, index int) netlink.Route {
	r := netlink.Route{
		LinkIndex: index,
		Dst:       p.Dst,
		Gw:        p.Gw,
		Src:       p.Src,
		Scope:     netlink.Scope(p.Scope),
		Protocol:  unix.RTPROT_BOOT,
		Table:     unix.RT_TABLE_MAIN,
		Type:      unix.RTN_UNICAST,
		Family:    netlink.FAMILY_V4,
	}
	if p.V6 {
		r.Family = netlink.FAMILY_V6
	}
	if p.OnLink {
		r.Flags = unix.RTNH_F_ONLINK
	}
	r.MTU = p.MTU
	return r
}

// replaceRoutes removes old and adds want in order; on failure it undoes
// what it did and puts old back.
func (m *Manager) replaceRoutes(h *netlink.Handle, old, want []netlink.Route) error {
	// Gateway routes go first so a device route is never removed while a
	// route still depends on it.
	delOrder := slices.Clone(orderForAdd(old))
	slices.Reverse(delOrder)
	var removed []netlink.Route
	var stepErr error
	for _, r := range delOrder {
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			stepErr = fmt.Errorf("remove route %s: %w", r, sysErr(err))
			break
		}
		removed = append(removed, r)
	}
	var added []netlink.Route
	if stepErr == nil {
		for _, r := range want {
			err := h.RouteAdd(&r)
			if errors.Is(err, unix.EEXIST) {
				// The kernel already has it (a prefix route of an address).
				continue
			}
			if err != nil {
				stepErr = fmt.Errorf("add route %s: %w", describeRoute(h, r), sysErr(err))
				break
			}
			added = append(added, r)
		}
	}
	if stepErr == nil {
		return nil
	}
	var errs []error
	for i := len(added) - 1; i >= 0; i-- {
		if err := h.RouteDel(&added[i]); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove added route %s: %w", added[i], err))
		}
	}
	for _, r := range orderForAdd(removed) {
		if err := h.RouteAdd(&r); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("restore route %s: %w", r, err))
		}
	}
	if rb := errors.Join(errs...); rb != nil {
		m.log.Error("restore routes after failed update", "error", rb)
		return errors.Join(fmt.Errorf("update routes: %w", stepErr), fmt.Errorf("restoring the previous table also failed: %w", rb))
	}
	return fmt.Errorf("update routes, previous table restored: %w", stepErr)
}

// describeRoute names a route by device name rather than index.
func describeRoute(h *netlink.Handle, r netlink.Route) string {
	dev := strconv.Itoa(r.LinkIndex)
	if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
		dev = l.Attrs().Name
	}
	s := r.Dst.String()
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	return s + " dev " + dev
}

// ListRoutes lists the main table's unicast routes through a device, for
// both families.
func (m *Manager) ListRoutes(ctx context.Context) ([]*typespb.Route, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h, err := m.nl()
	if err != nil {
		return nil, err
	}
	return m.listRoutes(h)
}

func (m *Manager) listRoutes(h *netlink.Handle) ([]*typespb.Route, error) {
	links, err := listLinks(h)
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	all, err := dump(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", sysErr(err))
	}
	out := make([]*typespb.Route, 0, len(all))
	for _, r := range all {
		name, ok := names[r.LinkIndex]
		if !ok || r.Type != unix.RTN_UNICAST {
			continue
		}
		out = append(out, routeOf(r, name))
	}
	return out, nil
}

// routeOf converts a kernel route to the protocol form.
func routeOf(r netlink.Route, device string) *typespb.Route {
	out := &typespb.Route{Device: device, Scope: uint32(r.Scope), Flags: uint32(r.Flags), Family: typespb.IPFamily_v4, Mtu: uint32(r.MTU)}
	if r.Family == netlink.FAMILY_V6 {
		out.Family = typespb.IPFamily_v6
	}
	if r.Dst != nil {
		out.Dest = r.Dst.String()
	} else if out.Family == typespb.IPFamily_v6 {
		out.Dest = "::/0"
	} else {
		out.Dest = "0.0.0.0/0"
	}
	if r.Gw != nil {
		out.Gateway = r.Gw.String()
	}
	if r.Src != nil {
		out.Source = r.Src.String()
	}
	return out
}

// ---- neighbours ----

// AddARPNeighbors adds (or replaces) static neighbour entries. All entries
// are validated first; if the kernel refuses one, the entries already
// written are put back as they were.
func (m *Manager) AddARPNeighbors(ctx context.Context, neighs []*typespb.ARPNeighbor) error {
	if len(neighs) > maxNeighs {
		return hostinput.Invalid("%d neighbours, more than %d", len(neighs), maxNeighs)
	}
	plans := make([]neighPlan, 0, len(neighs))
	for i, n := range neighs {
		p, err := parseNeighbor(i, n)
		if err != nil {
			return err
		}
		plans = append(plans, p)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h, links, err := m.linksLocked()
	if err != nil {
		return err
	}
	byName := map[string]int{}
	for _, l := range links {
		byName[l.Attrs().Name] = l.Attrs().Index
	}
	entries := make([]netlink.Neigh, 0, len(plans))
	for i, p := range plans {
		idx, ok := byName[p.Device]
		if !ok {
			return fmt.Errorf("neighbour %d (%s): device %q: Link not found: %w", i, p.IP, p.Device, errdefs.ErrNotFound)
		}
		fam := netlink.FAMILY_V4
		if p.IP.To4() == nil {
			fam = netlink.FAMILY_V6
		}
		entries = append(entries, netlink.Neigh{LinkIndex: idx, Family: fam, State: p.State, Flags: p.Flags, IP: p.IP, HardwareAddr: p.MAC})
	}
	// Save what each entry will replace.
	prev := make([]*netlink.Neigh, len(entries))
	for i, e := range entries {
		cur, err := dump(func() ([]netlink.Neigh, error) { return h.NeighList(e.LinkIndex, e.Family) })
		if err != nil {
			return fmt.Errorf("list neighbours: %w", sysErr(err))
		}
		for _, c := range cur {
			if c.IP.Equal(e.IP) {
				c := c
				prev[i] = &c
				break
			}
		}
	}
	for i := range entries {
		if err := h.NeighSet(&entries[i]); err != nil {
			stepErr := fmt.Errorf("add neighbour %s dev %s: %w", plans[i].IP, plans[i].Device, sysErr(err))
			var errs []error
			for j := i - 1; j >= 0; j-- {
				var rerr error
				if prev[j] != nil {
					rerr = h.NeighSet(prev[j])
				} else {
					rerr = h.NeighDel(&entries[j])
				}
				if rerr != nil {
					errs = append(errs, fmt.Errorf("undo neighbour %s: %w", plans[j].IP, rerr))
				}
			}
			if rb := errors.Join(errs...); rb != nil {
				return errors.Join(stepErr, rb)
			}
			return fmt.Errorf("%w (earlier entries of the request undone)", stepErr)
		}
	}
	return nil
}

// ---- iptables ----

// GetIPTables returns iptables-save (ip6tables-save with ipv6) output.
func (m *Manager) GetIPTables(ctx context.Context, ipv6 bool) ([]byte, error) {
	return m.ipt.Save(ctx, ipv6)
}

// SetIPTables feeds data to iptables-restore (ip6tables-restore with
// ipv6) and returns its output.
func (m *Manager) SetIPTables(ctx context.Context, ipv6 bool, data []byte) ([]byte, error) {
	return m.ipt.Restore(ctx, ipv6, data)
}

// linksLocked opens the netlink handle and lists the links. m.mu must be
// held, and stays held while the caller uses both.
func (m *Manager) linksLocked() (*netlink.Handle, []netlink.Link, error) {
	h, err := m.nl()
	if err != nil {
		return nil, nil, err
	}
	links, err := listLinks(h)
	if err != nil {
		return nil, nil, err
	}
	return h, links, nil
}

func listLinks(h *netlink.Handle) ([]netlink.Link, error) {
	links, err := dump(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", sysErr(err))
	}
	return links, nil
}
