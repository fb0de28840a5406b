package swap

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/agent/safefs"
)

// BlockWaiter finds a hot-plugged virtio-blk disk by its PCI path
// (implemented by device.Waiter).
type BlockWaiter interface {
	BlockPCI(ctx context.Context, pciPath string) (string, error)
}

// Config configures a Manager. Zero values select the guest defaults.
type Config struct {
	// Devices finds AddSwap's disks; without it AddSwap is Unavailable.
	Devices BlockWaiter
	// DevRoot is where device nodes live (/dev): AddSwapPath accepts
	// block devices below it.
	DevRoot string
	// FileRoot is where swap files may live (guestpath.KataRoot, the
	// runtime's part of the guest): AddSwapPath accepts regular files
	// below it and nothing else outside DevRoot, because the area is
	// written to.
	FileRoot string
	// PageSize defaults to os.Getpagesize().
	PageSize int
	// Swapon adds an area (a /proc/self/fd path); defaults to
	// swapon(2) with no flags, as upstream.
	Swapon func(path string) error
}

// Manager adds swap areas; one at a time.
type Manager struct {
	cfg Config
	mu  sync.Mutex
}

// New returns a Manager.
func New(cfg Config) *Manager {
	if cfg.DevRoot == "" {
		cfg.DevRoot = "/dev"
	}
	if cfg.FileRoot == "" {
		cfg.FileRoot = "/run/kata-containers"
	}
	cfg.DevRoot, cfg.FileRoot = filepath.Clean(cfg.DevRoot), filepath.Clean(cfg.FileRoot)
	if cfg.PageSize == 0 {
		cfg.PageSize = os.Getpagesize()
	}
	if cfg.Swapon == nil {
		cfg.Swapon = swapon
	}
	return &Manager{cfg: cfg}
}

// maxSlot is the highest device number on a PCI bus.
const maxSlot = 0x1f

// AddPCI waits for the virtio-blk disk at the PCI path given as slots
// (AddSwapRequest.PCIPath, one slot per bridge level, function 0) and
// makes it swap.
func (m *Manager) AddPCI(ctx context.Context, slots []uint32) error {
	if len(slots) == 0 {
		return hostinput.Invalid("swap device: empty PCI path")
	}
	parts := make([]string, len(slots))
	for i, s := range slots {
		if s > maxSlot {
			return hostinput.Invalid("swap device: PCI slot %#x at level %d is above %#x", s, i, maxSlot)
		}
		parts[i] = fmt.Sprintf("%02x", s)
	}
	pciPath := strings.Join(parts, "/")
	if m.cfg.Devices == nil {
		return fmt.Errorf("swap device at PCI path %s: no device waiter configured: %w", pciPath, errdefs.ErrUnavailable)
	}
	node, err := m.cfg.Devices.BlockPCI(ctx, pciPath)
	if err != nil {
		return fmt.Errorf("swap device at PCI path %s: %w", pciPath, err)
	}
	return m.AddPath(node)
}

// AddPath makes the block device below DevRoot or the regular file below
// FileRoot at p a swap area.
func (m *Manager) AddPath(p string) error {
	h, kind, err := m.open(p)
	if err != nil {
		return err
	}
	defer h.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.prepare(h, p, kind); err != nil {
		return err
	}
	if err := m.cfg.Swapon(safefs.ProcPath(h)); err != nil {
		return swaponError(p, err)
	}
	return nil
}

// open checks p and returns an O_PATH handle to it and its file type.
func (m *Manager) open(p string) (*os.File, uint32, error) {
	switch {
	case p == "":
		return nil, 0, hostinput.Invalid("swap path is empty")
	case strings.IndexByte(p, 0) >= 0:
		return nil, 0, hostinput.Invalid("swap path %q contains a NUL byte", hostinput.Clip(p))
	case !filepath.IsAbs(p):
		return nil, 0, hostinput.Invalid("swap path %q is not absolute", hostinput.Clip(p))
	case filepath.Clean(p) != p:
		return nil, 0, hostinput.Invalid("swap path %q is not clean (\"..\", \".\", \"//\" or a trailing slash)", hostinput.Clip(p))
	}
	var (
		h    *os.File
		want uint32
		err  error
	)
	switch {
	case strings.HasPrefix(p, m.cfg.DevRoot+"/"):
		// Resolved inside DevRoot like files inside FileRoot; only an
		// O_PATH handle until the type is known (opening some
		// character devices for I/O has effects).
		want = unix.S_IFBLK
		h, err = safefs.OpenInRoot(m.cfg.DevRoot, p)
	case strings.HasPrefix(p, m.cfg.FileRoot+"/"):
		want = unix.S_IFREG
		h, err = safefs.OpenInRoot(m.cfg.FileRoot, p)
	default:
		return nil, 0, hostinput.Invalid("swap path %q is outside %s (block devices) and %s (swap files)", hostinput.Clip(p), m.cfg.DevRoot, m.cfg.FileRoot)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, fmt.Errorf("swap path %s: %w", p, errdefs.ErrNotFound)
		}
		if errors.Is(err, unix.ELOOP) {
			return nil, 0, hostinput.Invalid("swap path %q is a symbolic link", hostinput.Clip(p))
		}
		return nil, 0, fmt.Errorf("swap path %s: %w", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		h.Close()
		return nil, 0, fmt.Errorf("stat swap path %s: %w", p, err)
	}
	if got := st.Mode & unix.S_IFMT; got != want {
		h.Close()
		return nil, 0, hostinput.Invalid("swap path %q is %s, not %s", hostinput.Clip(p), typeName(got), typeName(want))
	}
	return h, want, nil
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return fmt.Sprintf("of type %#o", t)
}

// prepare leaves a swap signature on the area behind h: kept if there is
// one, written if the first page is blank, refused otherwise.
func (m *Manager) prepare(h *os.File, p string, kind uint32) error {
	flags := unix.O_RDWR | unix.O_CLOEXEC
	if kind == unix.S_IFBLK {
		// Fails with EBUSY while the disk is mounted or already swap;
		// released before swapon, which claims the disk itself.
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(safefs.ProcPath(h), flags, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("swap device %s is in use (mounted or already swap): %w", p, errdefs.ErrAlreadyExists)
		}
		return fmt.Errorf("open swap path %s: %w", p, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("size of swap path %s: %w", p, err)
	}
	ps := m.cfg.PageSize
	if size < int64(MinPages*ps) {
		return fmt.Errorf("swap path %s has %d bytes, a swap area needs at least %d (%d pages): %w", p, size, MinPages*ps, MinPages, errdefs.ErrFailedPrecondition)
	}
	if kind == unix.S_IFREG {
		// The kernel refuses swap files with holes; say so plainly.
		if hole, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_HOLE); err == nil && hole < size {
			return fmt.Errorf("swap file %s has holes (at byte %d): it must be fully allocated: %w", p, hole, errdefs.ErrFailedPrecondition)
		}
	}
	page := make([]byte, ps)
	if _, err := f.ReadAt(page, 0); err != nil {
		return fmt.Errorf("read swap path %s: %w", p, err)
	}
	if HasSignature(page, ps) {
		return nil
	}
	if !blank(page) {
		return fmt.Errorf("swap path %s holds data and no swap signature; refusing to overwrite it: %w", p, errdefs.ErrFailedPrecondition)
	}
	var uuid [16]byte
	_, _ = rand.Read(uuid[:])
	uuid[6] = uuid[6]&0x0f | 0x40 // version 4 (random)
	uuid[8] = uuid[8]&0x3f | 0x80 // RFC 4122 variant
	hdr, err := Header(ps, size, uuid)
	if err != nil {
		return fmt.Errorf("swap path %s: %w", p, err)
	}
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return fmt.Errorf("write swap header on %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync swap header on %s: %w", p, err)
	}
	return nil
}

// swaponError classifies what swapon(2) said about p.
func swaponError(p string, err error) error {
	switch {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("swapon %s: already in use: %w (%w)", p, err, errdefs.ErrAlreadyExists)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("swapon %s: the kernel refused the area (a filesystem that cannot hold swap files?): %w (%w)", p, err, errdefs.ErrFailedPrecondition)
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("swapon %s: the guest kernel has no swap support (CONFIG_SWAP): %w (%w)", p, err, errdefs.ErrNotImplemented)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("swapon %s: %w (%w)", p, err, errdefs.ErrPermissionDenied)
	}
	return fmt.Errorf("swapon %s: %w", p, err)
}

// swapon calls swapon(2) with no flags (x/sys/unix has no wrapper).
func swapon(path string) error {
	b, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(b)), 0, 0); e != 0 {
		return e
	}
	return nil
}
