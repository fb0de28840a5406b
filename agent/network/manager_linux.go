package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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
