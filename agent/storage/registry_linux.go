package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
)

// driver is everything the manager knows about one Storage.driver value.
// The drivers table below is the one list of them: validation, device
// resolution, mounting and GetGuestDetails' storage_handlers (Drivers) all
// read it, so a driver is added or removed in one place.
type driver struct {
	name string
	// fsGID: the driver takes the fsgid option (applied to the mount
	// point, not passed to mount(2)).
	fsGID bool
	// adopt: a mount point found already mounted is used as it is rather
	// than mounted again. False for drivers that make the point
	// themselves (a directory, a watched copy).
	adopt bool
	// check validates the driver's own fields; nil when there are none.
	check func(m *Manager, r *request) error
	// device finds the block device a source names; nil for drivers that
	// need none.
	device func(d DeviceWaiter, ctx context.Context, source string) (string, error)
	// mount mounts r and returns how to undo it.
	mount func(m *Manager, r *request) (func() error, error)
}

var drivers = []driver{
	{name: DriverVirtioFS, adopt: true, check: checkShareTag, mount: func(m *Manager, r *request) (func() error, error) {
		return m.mountFS(r.st.Source, r, "virtiofs", r.opts, nil)
	}},
	{name: Driver9p, adopt: true, check: checkShareTag, mount: func(m *Manager, r *request) (func() error, error) {
		return m.mountFS(r.st.Source, r, "9p", r.opts, nil)
	}},
	{name: DriverLocal, fsGID: true, mount: (*Manager).mountLocal},
	{name: DriverEphemeral, fsGID: true, adopt: true, check: checkEphemeral, mount: (*Manager).mountEphemeral},
	{name: DriverBind, adopt: true, check: checkBindSource, mount: func(m *Manager, r *request) (func() error, error) {
		return m.mountBind(r.st.Source, r.key, r.opts)
	}},
	{name: DriverWatchableBind, check: checkBindSource, mount: (*Manager).mountWatchable},
	{name: DriverBlk, adopt: true, check: checkBlock, device: blkDevice, mount: (*Manager).mountBlock},
	{name: DriverMMIOBlk, adopt: true, check: checkBlock, device: DeviceWaiter.BlockMMIO, mount: (*Manager).mountBlock},
	{name: DriverSCSI, adopt: true, check: checkBlock, device: DeviceWaiter.SCSI, mount: (*Manager).mountBlock},
	{name: DriverOverlayFS, adopt: true, check: checkOverlay, mount: (*Manager).mountOverlay},
}

// lookupDriver returns the driver named name.
func lookupDriver(name string) (*driver, bool) {
	for i := range drivers {
		if drivers[i].name == name {
			return &drivers[i], true
		}
	}
	return nil, false
}

// Drivers lists the storage drivers the manager handles (for
// GetGuestDetails' storage_handlers).
func Drivers() []string {
	names := make([]string, len(drivers))
	for i, d := range drivers {
		names[i] = d.name
	}
	return names
}

func checkShareTag(_ *Manager, r *request) error {
	if r.st.Source == "" {
		return hostinput.Invalid("%s storage at %s: empty source (the share's tag)", r.st.Driver, r.key)
	}
	return nil
}

func checkEphemeral(_ *Manager, r *request) error {
	switch r.st.Fstype {
	case "", "tmpfs", "hugetlbfs":
		return nil
	}
	return hostinput.Invalid("ephemeral storage at %s: fstype %q is neither tmpfs nor hugetlbfs", r.key, hostinput.Clip(r.st.Fstype))
}

func checkBindSource(_ *Manager, r *request) error {
	if !filepath.IsAbs(r.st.Source) {
		return hostinput.Invalid("%s storage at %s: source %q is not an absolute path", r.st.Driver, r.key, hostinput.Clip(r.st.Source))
	}
	return nil
}

func checkBlock(_ *Manager, r *request) error {
	if r.st.Source == "" {
		return hostinput.Invalid("%s storage at %s: empty source", r.st.Driver, r.key)
	}
	if r.st.Fstype == "" {
		return hostinput.Invalid("%s storage at %s: empty fstype", r.st.Driver, r.key)
	}
	return nil
}

// checkOverlay confines every layer under Root, like the mount point.
func checkOverlay(m *Manager, r *request) error {
	lower, ok := r.opts.Value("lowerdir")
	if !ok {
		return hostinput.Invalid("overlayfs storage at %s: no lowerdir option", r.key)
	}
	for _, l := range strings.Split(lower, ":") {
		if _, err := relUnder(m.cfg.Root, l); err != nil {
			return fmt.Errorf("overlayfs storage at %s: lowerdir: %w", r.key, err)
		}
	}
	for _, k := range []string{"upperdir", "workdir"} {
		if v, ok := r.opts.Value(k); ok {
			if _, err := relUnder(m.cfg.Root, v); err != nil {
				return fmt.Errorf("overlayfs storage at %s: %s: %w", r.key, k, err)
			}
		}
	}
	return nil
}

// blkDevice finds a virtio-blk device: a /dev path is the MMIO form, else
// the source is a PCI path.
func blkDevice(d DeviceWaiter, ctx context.Context, source string) (string, error) {
	if strings.HasPrefix(source, "/dev/") {
		return d.BlockMMIO(ctx, source)
	}
	return d.BlockPCI(ctx, source)
}
