package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

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
