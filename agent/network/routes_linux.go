package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

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
