package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/guestpath"
)

// Driver names as the runtime sends them in Storage.driver.
const (
	DriverVirtioFS      = "virtio-fs"
	Driver9p            = "9p"
	DriverLocal         = "local"
	DriverEphemeral     = "ephemeral"
	DriverBind          = "bind"
	DriverWatchableBind = "watchable-bind"
	DriverBlk           = "blk"
	DriverMMIOBlk       = "mmioblk"
	DriverSCSI          = "scsi"
	DriverOverlayFS     = "overlayfs"
)

// Mounter performs the mount system calls; tests inject a fake.
type Mounter interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
}

// SysMounter calls mount(2) and umount2(2).
type SysMounter struct{}

// Mount calls mount(2).
func (SysMounter) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

// Unmount calls umount2(2).
func (SysMounter) Unmount(target string, flags int) error { return unix.Unmount(target, flags) }

// DeviceWaiter finds block devices by the runtime's address for them
// (implemented by device.Waiter).
type DeviceWaiter interface {
	BlockPCI(ctx context.Context, pciPath string) (string, error)
	BlockMMIO(ctx context.Context, vmPath string) (string, error)
	SCSI(ctx context.Context, addr string) (string, error)
}

// Config configures a Manager. Zero values select the guest defaults.
type Config struct {
	// Root confines every mount point (guestpath.KataRoot).
	Root string
	// Mounter defaults to SysMounter.
	Mounter Mounter
	// Devices resolves blk, mmioblk and scsi sources; without it those
	// drivers fail with Unavailable.
	Devices DeviceWaiter
	// SysfsRoot is where hugepage pools are sized (/sys).
	SysfsRoot string
	// IsMounted reports whether a path is a mount point; defaults to
	// mountinfo.Mounted.
	IsMounted func(path string) (bool, error)
	// WatchInterval is how often watchable-bind sources are polled
	// (default 2 s, as upstream).
	WatchInterval time.Duration
	Log           *slog.Logger
}

// mount is one mounted point and who holds it.
type mount struct {
	driver string
	source string
	target string
	refs   map[string]int
	// release undoes the mount; nil for an adopted point (one that was
	// mounted before we were asked), which we leave as we found it.
	release func() error
}

// Manager mounts storages and counts references to them. It implements the
// StorageManager interface of the sandbox package.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	points map[string]*mount // by cleaned mount point

	watchOnce sync.Once
	watch     *watcher

	// verifyMounts checks, with the real mounter, that what a mount point
	// leads to after mounting (and before unmounting) is our mount.
	verifyMounts bool
}

// New returns a Manager.
func New(cfg Config) *Manager {
	if cfg.Root == "" {
		cfg.Root = guestpath.KataRoot
	}
	cfg.Root = filepath.Clean(cfg.Root)
	if cfg.Mounter == nil {
		cfg.Mounter = SysMounter{}
	}
	_, sysMounter := cfg.Mounter.(SysMounter)
	if cfg.SysfsRoot == "" {
		cfg.SysfsRoot = "/sys"
	}
	if cfg.IsMounted == nil {
		cfg.IsMounted = mountinfo.Mounted
	}
	if cfg.WatchInterval <= 0 {
		cfg.WatchInterval = 2 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &Manager{cfg: cfg, log: log, points: map[string]*mount{}, verifyMounts: sysMounter}
}

// request is a validated storage, ready to mount.
type request struct {
	st     *pb.Storage
	drv    *driver
	key    string // cleaned mount point: the reference-count key
	target string // mount point with symlinks resolved inside Root
	opts   MountOptions
	device string // resolved device node for block drivers
	fsGID  int    // the fsgid option of ephemeral and local storages, -1 without
}

// Mount mounts storages for owner. Every storage is validated before
// anything is mounted; block devices are waited for without holding the
// manager's lock. If one storage fails, the references this call took are
// dropped again.
func (m *Manager) Mount(ctx context.Context, owner string, storages []*pb.Storage) error {
	reqs := make([]*request, 0, len(storages))
	for i, st := range storages {
		r, err := m.validate(st)
		if err != nil {
			return fmt.Errorf("storage %d: %w", i, err)
		}
		reqs = append(reqs, r)
	}
	for _, r := range reqs {
		if err := m.resolveDevice(ctx, r); err != nil {
			return err
		}
	}
	var taken []string
	for _, r := range reqs {
		if err := m.mountOne(owner, r); err != nil {
			if rerr := m.drop(owner, taken); rerr != nil {
				err = errors.Join(err, fmt.Errorf("roll back: %w", rerr))
			}
			return err
		}
		taken = append(taken, r.key)
	}
	return nil
}

// Release drops every reference owner holds; points left without
// references are unmounted. Errors name each point that failed.
func (m *Manager) Release(ctx context.Context, owner string) error {
	m.mu.Lock()
	var keys []string
	for k, p := range m.points {
		for i := p.refs[owner]; i > 0; i-- {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	return m.drop(owner, keys)
}

// drop removes one reference of owner per key, unmounting points that
// reach zero.
func (m *Manager) drop(owner string, keys []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, k := range keys {
		p, ok := m.points[k]
		if !ok || p.refs[owner] == 0 {
			continue
		}
		p.refs[owner]--
		if p.refs[owner] == 0 {
			delete(p.refs, owner)
		}
		if len(p.refs) > 0 {
			continue
		}
		delete(m.points, k)
		if p.release == nil {
			continue
		}
		if err := p.release(); err != nil {
			errs = append(errs, fmt.Errorf("release %s storage at %s: %w", p.driver, k, err))
		} else {
			m.log.Debug("storage released", "driver", p.driver, "mount_point", k)
		}
	}
	return errors.Join(errs...)
}

// Refs returns how many references point holds in total (0 when it is not
// mounted by this manager).
func (m *Manager) Refs(point string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	if p, ok := m.points[filepath.Clean(point)]; ok {
		for _, c := range p.refs {
			n += c
		}
	}
	return n
}

// MountPoints lists the points owner holds, sorted.
func (m *Manager) MountPoints(owner string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k, p := range m.points {
		if p.refs[owner] > 0 {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Confine checks that p is an absolute path strictly under root and
// returns it cleaned (the key) and with symlinks resolved inside root (the
// path to operate on).
func Confine(root, p string) (key, target string, err error) {
	if p == "" {
		return "", "", hostinput.Invalid("empty path")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", "", hostinput.Invalid("path %q contains a NUL byte", hostinput.Clip(p))
	}
	if !filepath.IsAbs(p) {
		return "", "", hostinput.Invalid("path %q is not absolute", hostinput.Clip(p))
	}
	root = filepath.Clean(root)
	key = filepath.Clean(p)
	if key == root || !strings.HasPrefix(key, root+"/") {
		return "", "", hostinput.Invalid("path %q is outside %s", hostinput.Clip(p), root)
	}
	target, err = securejoin.SecureJoin(root, strings.TrimPrefix(key, root))
	if err != nil {
		return "", "", fmt.Errorf("resolve %q under %s: %w", hostinput.Clip(p), root, err)
	}
	return key, target, nil
}

func (m *Manager) validate(st *pb.Storage) (*request, error) {
	if st == nil {
		return nil, hostinput.Invalid("empty storage")
	}
	drv, ok := lookupDriver(st.Driver)
	if !ok {
		return nil, hostinput.Invalid("unknown storage driver %q", hostinput.Clip(st.Driver))
	}
	key, target, err := Confine(m.cfg.Root, st.MountPoint)
	if err != nil {
		return nil, fmt.Errorf("%s storage mount point: %w", st.Driver, err)
	}
	opts, err := ParseOptions(st.Options)
	if err != nil {
		return nil, fmt.Errorf("%s storage at %s: %w", st.Driver, key, err)
	}
	r := &request{st: st, drv: drv, key: key, target: target, opts: opts, fsGID: -1}
	if drv.fsGID {
		if r.fsGID, err = fsGIDOption(opts); err != nil {
			return nil, fmt.Errorf("%s storage at %s: %w", st.Driver, key, err)
		}
		// Not a mount option (tmpfs refuses it): the mount point gets
		// the group once mounted.
		r.opts = opts.Without(fsGIDKey)
	}
	if drv.check != nil {
		if err := drv.check(m, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// fsGIDKey is the option the runtime adds for a pod's fsGroup.
const fsGIDKey = "fsgid"

// fsGIDOption returns the fsgid option's group id, -1 when absent.
func fsGIDOption(opts MountOptions) (int, error) {
	v, ok := opts.Value(fsGIDKey)
	if !ok {
		return -1, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 1<<32-1 {
		return -1, hostinput.Invalid("fsgid %q is not a group id", hostinput.Clip(v))
	}
	return int(n), nil
}

func (m *Manager) resolveDevice(ctx context.Context, r *request) error {
	if r.drv.device == nil {
		return nil
	}
	if m.cfg.Devices == nil {
		return fmt.Errorf("%s storage at %s: no device waiter configured: %w", r.st.Driver, r.key, errdefs.ErrUnavailable)
	}
	node, err := r.drv.device(m.cfg.Devices, ctx, r.st.Source)
	if err != nil {
		return fmt.Errorf("%s storage at %s: device %q: %w", r.st.Driver, r.key, hostinput.Clip(r.st.Source), err)
	}
	r.device = node
	return nil
}

func (m *Manager) mountOne(owner string, r *request) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.points[r.key]; ok {
		if p.driver != r.st.Driver || p.source != r.st.Source {
			m.log.Warn("mount point already holds another storage; sharing it",
				"mount_point", r.key, "driver", p.driver, "source", p.source, "requested_driver", r.st.Driver, "requested_source", r.st.Source)
		}
		p.refs[owner]++
		return nil
	}
	p := &mount{driver: r.st.Driver, source: r.st.Source, target: r.target, refs: map[string]int{owner: 1}}
	if r.drv.adopt {
		if mounted, err := m.cfg.IsMounted(r.target); err == nil && mounted {
			m.log.Info("mount point already mounted; using it as it is", "mount_point", r.key, "driver", r.st.Driver)
			m.points[r.key] = p
			return nil
		}
	}
	release, err := r.drv.mount(m, r)
	if err != nil {
		return fmt.Errorf("%s storage at %s: %w", r.st.Driver, r.key, err)
	}
	p.release = release
	m.points[r.key] = p
	m.log.Debug("storage mounted", "driver", r.st.Driver, "mount_point", r.key, "owner", owner)
	return nil
}
