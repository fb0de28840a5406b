package network

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

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
