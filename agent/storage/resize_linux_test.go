package storage

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// ioc builds an ioctl number as the kernel's _IOC does on x86 and arm64.
func ioc(dir, typ, nr, size uintptr) uintptr { return dir<<30 | size<<16 | typ<<8 | nr }

func TestResizeIoctlLayout(t *testing.T) {
	const write, read = 1, 2
	if got := ioc(write, 'f', 16, 8); got != ext4IocResizeFS {
		t.Errorf("EXT4_IOC_RESIZE_FS %#x, want %#x", ext4IocResizeFS, got)
	}
	if got := ioc(read, 'X', 100, unsafe.Sizeof(xfsGeomV1{})); got != xfsIocFSGeometryV1 || unsafe.Sizeof(xfsGeomV1{}) != 112 {
		t.Errorf("XFS_IOC_FSGEOMETRY_V1 %#x, want %#x (struct %d bytes, want 112)", xfsIocFSGeometryV1, got, unsafe.Sizeof(xfsGeomV1{}))
	}
	if got := ioc(write, 'X', 110, unsafe.Sizeof(xfsGrowFSData{})); got != xfsIocFSGrowFSData || unsafe.Sizeof(xfsGrowFSData{}) != 16 {
		t.Errorf("XFS_IOC_FSGROWFSDATA %#x, want %#x", xfsIocFSGrowFSData, got)
	}
	if off := unsafe.Offsetof(xfsGeomV1{}.Datablocks); off != 32 {
		t.Errorf("xfs geometry datablocks at %d, want 32", off)
	}
}

func TestResizeVolumeRefuses(t *testing.T) {
	m, fm, root := newFakeManager(t)
	m.cfg.Devices = fakeDevices{}
	ctx := context.Background()
	if err := m.Mount(ctx, "c1", []*pb.Storage{
		{Driver: "local", MountPoint: root + "/local"},
		{Driver: "blk", Source: "02", Fstype: "ext4", MountPoint: root + "/blk"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path  string
		size  uint64
		class func(error) bool
		says  string
	}{
		{"rel/vol", 1 << 20, errdefs.IsInvalidArgument, "not absolute"},
		{"/etc", 1 << 20, errdefs.IsInvalidArgument, "outside"},
		{root + "/blk", 0, errdefs.IsInvalidArgument, "size 0"},
		{root + "/nothing", 1 << 20, errdefs.IsNotFound, "no storage is mounted"},
		{root + "/local", 1 << 20, errdefs.IsFailedPrecondition, "local storage, not a filesystem on a block device"},
	} {
		err := m.ResizeVolume(c.path, c.size)
		if err == nil || !c.class(err) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("ResizeVolume(%q, %d) = %v, want %q", c.path, c.size, err, c.says)
		}
	}
	if len(fm.calls) != 1 { // local makes a directory, blk mounts
		t.Fatalf("mount calls %v", fm.calls)
	}
}

func TestDeviceBytes(t *testing.T) {
	sys := t.TempDir()
	dir := filepath.Join(sys, "dev/block/253:16")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "size"), []byte("204800\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := deviceBytes(sys, unix.Mkdev(253, 16))
	if err != nil || n != 100<<20 {
		t.Fatalf("deviceBytes = %d, %v", n, err)
	}
	if _, err := deviceBytes(sys, unix.Mkdev(253, 17)); err == nil {
		t.Fatal("a missing device has a size")
	}
	if err := os.WriteFile(filepath.Join(dir, "size"), []byte("lots"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := deviceBytes(sys, unix.Mkdev(253, 16)); err == nil {
		t.Fatal("garbage parsed")
	}
}

// TestGrowFSNamesUnsupported: a filesystem other than ext4 and xfs is
// refused as not implemented, naming it.
func TestGrowFSNamesUnsupported(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = growFS(f, dir, 2<<20, "/sys")
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "tmpfs") {
		t.Fatalf("err = %v, want NotImplemented naming tmpfs", err)
	}
}

// loopDevices hands out a fixed loop device for whatever the storage
// names.
type loopDevices struct{ node string }

func (l loopDevices) BlockPCI(context.Context, string) (string, error)  { return l.node, nil }
func (l loopDevices) BlockMMIO(context.Context, string) (string, error) { return l.node, nil }
func (l loopDevices) SCSI(context.Context, string) (string, error)      { return l.node, nil }

// TestRealResizeExt4 grows a mounted ext4 on a loop device whose backing
// file grew, as the guest sees a virtio disk grow after block_resize.
func TestRealResizeExt4(t *testing.T) {
	m, root := realManager(t)
	img, dev := loopExt4(t, 32<<20)
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	m.cfg.Devices = loopDevices{node: dev}
	mp := filepath.Join(root, "sandbox/storage/vol")
	ctx := context.Background()
	if err := m.Mount(ctx, "c1", []*pb.Storage{{Driver: "blk", Source: "02", Fstype: "ext4", MountPoint: mp}}); err != nil {
		t.Fatal(err)
	}
	total := func() uint64 {
		var s unix.Statfs_t
		if err := unix.Statfs(mp, &s); err != nil {
			t.Fatal(err)
		}
		return s.Blocks * uint64(s.Bsize)
	}
	before := total()

	// The disk is still 32 MiB: asking for more is refused.
	if err := m.ResizeVolume(mp, 64<<20); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "grow the disk first") {
		t.Fatalf("beyond the disk: %v", err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	run("losetup", "-c", dev)
	if err := m.ResizeVolume(mp, 8<<20); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "shrinking") {
		t.Fatalf("shrink: %v", err)
	}
	err := m.ResizeVolume(mp, 64<<20)
	if errdefs.IsPermissionDenied(err) && !hasCapSysResource(t) {
		t.Skipf("ext4 online resize needs CAP_SYS_RESOURCE, which this host withholds: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	after := total()
	t.Logf("ext4 total %d -> %d bytes", before, after)
	if after < before+30<<20 {
		t.Fatalf("filesystem did not grow: %d -> %d bytes", before, after)
	}
	// The same size again is a no-op, not an error.
	if err := m.ResizeVolume(mp, 64<<20); err != nil {
		t.Fatalf("same size again: %v", err)
	}
	if err := m.Release(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if out := run("losetup", "-l", "-n", "-O", "NAME", dev); out != dev {
		t.Fatalf("loop device gone: %q", out)
	}
}

func hasCapSysResource(t *testing.T) bool {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	return data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0
}
