package swap

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/device"
)

// fakeSwapon records what swapon(2) would have been given and what the
// area's first page held at that moment.
type fakeSwapon struct {
	calls []string
	pages [][]byte
	err   error
}

func (f *fakeSwapon) swapon(p string) error {
	f.calls = append(f.calls, p)
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	f.pages = append(f.pages, b[:min(len(b), 4096)])
	return f.err
}

type roots struct {
	dev, files string
	sw         *fakeSwapon
	m          *Manager
}

func newRoots(t *testing.T, waiter BlockWaiter) *roots {
	t.Helper()
	r := &roots{dev: t.TempDir(), files: t.TempDir(), sw: &fakeSwapon{}}
	r.m = New(Config{Devices: waiter, DevRoot: r.dev, FileRoot: r.files, PageSize: 4096, Swapon: r.sw.swapon})
	return r
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAddPathFormatsBlankFile(t *testing.T) {
	r := newRoots(t, nil)
	p := filepath.Join(r.files, "sandbox", "swap0")
	writeFile(t, p, make([]byte, 32*4096+100))
	if err := r.m.AddPath(p); err != nil {
		t.Fatal(err)
	}
	if len(r.sw.calls) != 1 || !strings.HasPrefix(r.sw.calls[0], "/proc/self/fd/") {
		t.Fatalf("swapon calls %q", r.sw.calls)
	}
	page := r.sw.pages[0]
	if !HasSignature(page, 4096) {
		t.Fatal("swapon was called before the signature was written")
	}
	if last := uint32(page[1028]) | uint32(page[1029])<<8; last != 31 {
		t.Fatalf("last_page %d, want 31", last)
	}
	if bytes.Equal(page[1036:1052], make([]byte, 16)) {
		t.Fatal("no UUID")
	}
}

func TestAddPathKeepsExistingSignature(t *testing.T) {
	r := newRoots(t, nil)
	p := filepath.Join(r.files, "swap1")
	area := make([]byte, 16*4096)
	hdr, err := Header(4096, int64(len(area)), [16]byte{0xaa})
	if err != nil {
		t.Fatal(err)
	}
	copy(area, hdr)
	copy(area[1052:], "host-label") // what the host's mkswap wrote stays
	writeFile(t, p, area)
	if err := r.m.AddPath(p); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, area) {
		t.Fatal("an existing swap area was rewritten")
	}
}

func TestAddPathHostile(t *testing.T) {
	r := newRoots(t, nil)
	data := make([]byte, 16*4096)
	copy(data, "\x7fELF not a swap area")
	writeFile(t, filepath.Join(r.files, "data"), data)
	writeFile(t, filepath.Join(r.files, "small"), make([]byte, 9*4096))
	if err := os.Mkdir(filepath.Join(r.files, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside")
	writeFile(t, outside, make([]byte, 16*4096))
	if err := os.Symlink(outside, filepath.Join(r.files, "link")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(r.dev, "null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(r.dev, "plainfile"), make([]byte, 16*4096))
	sparse := filepath.Join(r.files, "sparse")
	if err := os.WriteFile(sparse, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(sparse, 1<<20); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		path  string
		class func(error) bool
		says  string
	}{
		{"", errdefs.IsInvalidArgument, "empty"},
		{"swapfile", errdefs.IsInvalidArgument, "not absolute"},
		{r.files + "/../x/swap", errdefs.IsInvalidArgument, "not clean"},
		{r.files + "/a\x00b", errdefs.IsInvalidArgument, "NUL"},
		{"/etc/passwd", errdefs.IsInvalidArgument, "outside"},
		{outside, errdefs.IsInvalidArgument, "outside"},
		{r.files, errdefs.IsInvalidArgument, "outside"},
		{filepath.Join(r.files, "dir"), errdefs.IsInvalidArgument, "is a directory"},
		{filepath.Join(r.files, "missing"), errdefs.IsNotFound, "missing"},
		{filepath.Join(r.files, "data"), errdefs.IsFailedPrecondition, "refusing to overwrite"},
		{filepath.Join(r.files, "small"), errdefs.IsFailedPrecondition, "at least 40960"},
		{sparse, errdefs.IsFailedPrecondition, "holes"},
		{filepath.Join(r.dev, "null"), errdefs.IsInvalidArgument, "character device, not a block device"},
		{filepath.Join(r.dev, "plainfile"), errdefs.IsInvalidArgument, "regular file, not a block device"},
	} {
		err := r.m.AddPath(c.path)
		if err == nil || !c.class(err) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("AddPath(%q) = %v, want a %q error of the right class", c.path, err, c.says)
		}
	}
	// The symlink resolves inside the root, to nothing: not the outside file.
	if err := r.m.AddPath(filepath.Join(r.files, "link")); err == nil {
		t.Error("a symlink out of the root was followed")
	}
	if len(r.sw.calls) != 0 {
		t.Fatalf("swapon called for hostile input: %q", r.sw.calls)
	}
	if got, _ := os.ReadFile(filepath.Join(r.files, "data")); !bytes.Equal(got, data) {
		t.Fatal("data was overwritten")
	}
	if got, _ := os.ReadFile(outside); !bytes.Equal(got, make([]byte, 16*4096)) {
		t.Fatal("a file outside the root was written")
	}
}

func TestSwaponErrorsClassified(t *testing.T) {
	r := newRoots(t, nil)
	p := filepath.Join(r.files, "swap")
	writeFile(t, p, make([]byte, 16*4096))
	for errno, class := range map[unix.Errno]func(error) bool{
		unix.EBUSY: errdefs.IsAlreadyExists, unix.EINVAL: errdefs.IsFailedPrecondition, unix.EPERM: errdefs.IsPermissionDenied, unix.ENOSYS: errdefs.IsNotImplemented,
	} {
		r.sw.err = errno
		err := r.m.AddPath(p)
		if !class(err) || !errors.Is(err, errno) {
			t.Errorf("swapon %v: got %v", errno, err)
		}
	}
}

type fixedWaiter struct {
	got  string
	node string
}

func (w *fixedWaiter) BlockPCI(_ context.Context, p string) (string, error) {
	w.got = p
	return w.node, nil
}

func TestAddPCIPath(t *testing.T) {
	w := &fixedWaiter{node: "/dev/vdb"}
	r := newRoots(t, w)
	w.node = filepath.Join(r.dev, "vdb")
	writeFile(t, w.node, make([]byte, 16*4096)) // a file, not a block device
	err := r.m.AddPCI(context.Background(), []uint32{2, 0x1f})
	if w.got != "02/1f" {
		t.Fatalf("waited for PCI path %q, want 02/1f", w.got)
	}
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not a block device") {
		t.Fatalf("err = %v", err)
	}
	for _, slots := range [][]uint32{nil, {0x20}, {1, 1 << 31}} {
		if err := r.m.AddPCI(context.Background(), slots); !errdefs.IsInvalidArgument(err) {
			t.Errorf("slots %v: %v, want InvalidArgument", slots, err)
		}
	}
	if err := New(Config{}).AddPCI(context.Background(), []uint32{2}); !errdefs.IsUnavailable(err) {
		t.Errorf("no waiter: %v", err)
	}
}

// TestAddPCIUnknownTimesOut uses the real waiter on an empty sysfs: a PCI
// path where no disk appears ends in DeadlineExceeded, not a hang.
func TestAddPCIUnknownTimesOut(t *testing.T) {
	sys := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sys, "bus/pci"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := &device.Waiter{Sysfs: device.Sysfs{Root: sys}, DevRoot: t.TempDir(), Timeout: 100 * time.Millisecond}
	r := newRoots(t, w)
	start := time.Now()
	err := r.m.AddPCI(context.Background(), []uint32{0x1e})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "PCI path 1e") {
		t.Fatalf("err = %v, want a deadline naming the PCI path", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}
