package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// fakeMounter records mount calls and tracks what is mounted.
type fakeMounter struct {
	mu      sync.Mutex
	mounted map[string]string // target -> fstype
	calls   []string
	failOn  string // fstype whose mount fails
}

func newFakeMounter() *fakeMounter { return &fakeMounter{mounted: map[string]string{}} }

// resolved names what a /proc/self/fd path leads to, as the kernel would.
// A name under a handle ("/proc/self/fd/N/name") resolves through it.
func resolved(p string) string {
	rest, ok := strings.CutPrefix(p, "/proc/self/fd/")
	if !ok {
		return p
	}
	fd, name, _ := strings.Cut(rest, "/")
	r, err := os.Readlink("/proc/self/fd/" + fd)
	if err != nil {
		return p
	}
	if name != "" {
		r += "/" + name
	}
	return r
}

func (f *fakeMounter) Mount(source, target, fstype string, flags uintptr, data string) error {
	source, target = resolved(source), resolved(target)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "mount "+fstype+" "+source+" "+target+" "+data)
	if fstype != "" && fstype == f.failOn {
		return unix.ENODEV
	}
	if flags&(unix.MS_REMOUNT|unix.MS_PRIVATE|unix.MS_SHARED|unix.MS_SLAVE) == 0 {
		f.mounted[target] = fstype
	}
	return nil
}

func (f *fakeMounter) Unmount(target string, flags int) error {
	target = resolved(target)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "umount "+target)
	if _, ok := f.mounted[target]; !ok {
		return unix.EINVAL
	}
	delete(f.mounted, target)
	return nil
}

func (f *fakeMounter) isMounted(p string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.mounted[p]
	return ok, nil
}

func newFakeManager(t *testing.T) (*Manager, *fakeMounter, string) {
	t.Helper()
	root := t.TempDir()
	fm := newFakeMounter()
	return New(Config{Root: root, Mounter: fm, IsMounted: fm.isMounted}), fm, root
}

func TestRefCountAcrossOwners(t *testing.T) {
	m, fm, root := newFakeManager(t)
	ctx := context.Background()
	share := &pb.Storage{Driver: "virtio-fs", Source: "kataShared", Fstype: "virtiofs", MountPoint: root + "/shared/containers/"}
	shm := &pb.Storage{Driver: "ephemeral", Source: "shm", Fstype: "tmpfs", MountPoint: root + "/sandbox/shm", Options: []string{"nodev", "size=1024"}}
	if err := m.Mount(ctx, "sandbox", []*pb.Storage{share, shm}); err != nil {
		t.Fatal(err)
	}
	// The container refers to the same share; trailing slash or not.
	share2 := &pb.Storage{Driver: "virtio-fs", Source: "kataShared", Fstype: "virtiofs", MountPoint: root + "/shared/containers"}
	if err := m.Mount(ctx, "c1", []*pb.Storage{share2}); err != nil {
		t.Fatal(err)
	}
	if err := m.Mount(ctx, "c2", []*pb.Storage{share2}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(root, "shared/containers")
	if got := m.Refs(target); got != 3 {
		t.Fatalf("refs = %d, want 3", got)
	}
	mounts := 0
	for _, c := range fm.calls {
		if strings.HasPrefix(c, "mount virtiofs kataShared") {
			mounts++
		}
	}
	if mounts != 1 {
		t.Fatalf("share mounted %d times: %v", mounts, fm.calls)
	}
	if err := m.Release(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(ctx, "sandbox"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := fm.isMounted(target); !ok {
		t.Fatal("share unmounted while c2 still holds it")
	}
	if ok, _ := fm.isMounted(filepath.Join(root, "sandbox/shm")); ok {
		t.Fatal("shm still mounted after its only owner released it")
	}
	if err := m.Release(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := fm.isMounted(target); ok {
		t.Fatal("share still mounted after the last release")
	}
	if m.Refs(target) != 0 || len(m.MountPoints("c2")) != 0 {
		t.Fatal("references left behind")
	}
	// Releasing an owner with nothing is fine.
	if err := m.Release(ctx, "nobody"); err != nil {
		t.Fatal(err)
	}
}

func TestMountRollsBackOnFailure(t *testing.T) {
	m, fm, root := newFakeManager(t)
	fm.failOn = "ext4"
	m.cfg.Devices = fakeDevices{}
	sts := []*pb.Storage{
		{Driver: "ephemeral", Fstype: "tmpfs", MountPoint: root + "/sandbox/ephemeral/a"},
		{Driver: "blk", Source: "02/01", Fstype: "ext4", MountPoint: root + "/c1/rootfs"},
	}
	err := m.Mount(context.Background(), "c1", sts)
	if err == nil || !errors.Is(err, unix.ENODEV) {
		t.Fatalf("err = %v, want ENODEV", err)
	}
	if !strings.Contains(err.Error(), "/dev/vdz") {
		t.Fatalf("error does not name the device: %v", err)
	}
	if ok, _ := fm.isMounted(filepath.Join(root, "sandbox/ephemeral/a")); ok {
		t.Fatal("first storage left mounted after the second failed")
	}
	if len(m.MountPoints("c1")) != 0 {
		t.Fatal("references left after rollback")
	}
}

type fakeDevices struct{}

func (fakeDevices) BlockPCI(ctx context.Context, p string) (string, error)  { return "/dev/vdz", nil }
func (fakeDevices) BlockMMIO(ctx context.Context, p string) (string, error) { return p, nil }
func (fakeDevices) SCSI(ctx context.Context, a string) (string, error)      { return "/dev/sdz", nil }

func TestMountValidation(t *testing.T) {
	m, fm, root := newFakeManager(t)
	cases := map[string]*pb.Storage{
		"unknown driver":    {Driver: "nvdimm", MountPoint: root + "/x"},
		"outside root":      {Driver: "ephemeral", MountPoint: "/tmp/x"},
		"dotdot escape":     {Driver: "ephemeral", MountPoint: root + "/../x"},
		"root itself":       {Driver: "ephemeral", MountPoint: root},
		"relative":          {Driver: "ephemeral", MountPoint: "run/kata-containers/x"},
		"empty mount point": {Driver: "ephemeral"},
		"bad fstype":        {Driver: "ephemeral", Fstype: "ext4", MountPoint: root + "/x"},
		"no tag":            {Driver: "virtio-fs", MountPoint: root + "/x"},
		"relative bind":     {Driver: "bind", Source: "etc", MountPoint: root + "/x"},
		"blk no fstype":     {Driver: "blk", Source: "02", MountPoint: root + "/x"},
		"overlay no lower":  {Driver: "overlayfs", MountPoint: root + "/x"},
		"nil":               nil,
	}
	for name, st := range cases {
		t.Run(name, func(t *testing.T) {
			err := m.Mount(context.Background(), "c", []*pb.Storage{st})
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
		})
	}
	err := m.Mount(context.Background(), "c", []*pb.Storage{{Driver: "nvdimm", MountPoint: root + "/x"}})
	if !strings.Contains(err.Error(), `"nvdimm"`) {
		t.Fatalf("error does not name the driver: %v", err)
	}
	if len(fm.calls) != 0 {
		t.Fatalf("mount attempted for invalid input: %v", fm.calls)
	}
	// blk without a device waiter: Unavailable, not a panic.
	err = m.Mount(context.Background(), "c", []*pb.Storage{{Driver: "scsi", Source: "0:1", Fstype: "ext4", MountPoint: root + "/x"}})
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("err = %v, want Unavailable", err)
	}
}

func TestConfineSymlinkStaysInside(t *testing.T) {
	root := t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(root, "evil")); err != nil {
		t.Fatal(err)
	}
	key, target, err := Confine(root, root+"/evil/passwd")
	if err != nil {
		t.Fatal(err)
	}
	if key != root+"/evil/passwd" {
		t.Fatalf("key = %s", key)
	}
	if target != filepath.Join(root, "etc/passwd") {
		t.Fatalf("symlink escaped: target = %s", target)
	}
}

func TestBlockStorageUsesDevice(t *testing.T) {
	m, fm, root := newFakeManager(t)
	m.cfg.Devices = fakeDevices{}
	st := &pb.Storage{Driver: "scsi", Source: "0:1", Fstype: "xfs", Options: []string{"ro"}, MountPoint: root + "/c1"}
	if err := m.Mount(context.Background(), "c1", []*pb.Storage{st}); err != nil {
		t.Fatal(err)
	}
	if fm.mounted[filepath.Join(root, "c1")] != "xfs" || !strings.Contains(fm.calls[0], "/dev/sdz") {
		t.Fatalf("calls %v", fm.calls)
	}
}

func TestHugepagesPool(t *testing.T) {
	m, fm, root := newFakeManager(t)
	sys := t.TempDir()
	pool := filepath.Join(sys, "kernel/mm/hugepages/hugepages-2048kB")
	os.MkdirAll(pool, 0o755)
	os.WriteFile(filepath.Join(pool, "free_hugepages"), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(pool, "nr_hugepages"), []byte("1\n"), 0o644)
	m.cfg.SysfsRoot = sys
	st := &pb.Storage{Driver: "ephemeral", Source: "nodev", Fstype: "hugetlbfs", Options: []string{"pagesize=2M", "size=8388608"}, MountPoint: root + "/hp"}
	if err := m.Mount(context.Background(), "c1", []*pb.Storage{st}); err != nil {
		t.Fatal(err)
	}
	nr, _ := os.ReadFile(filepath.Join(pool, "nr_hugepages"))
	if string(nr) != "4" {
		t.Fatalf("nr_hugepages = %q, want 4 (1 existing + 3 more for 4 pages with 1 free)", nr)
	}
	if !strings.Contains(fm.calls[0], "pagesize=2097152") || !strings.Contains(fm.calls[0], "size=8388608") {
		t.Fatalf("mount data: %v", fm.calls)
	}
	bad := &pb.Storage{Driver: "ephemeral", Fstype: "hugetlbfs", Options: []string{"pagesize=1G", "size=1G"}, MountPoint: root + "/hp2"}
	if err := m.Mount(context.Background(), "c1", []*pb.Storage{bad}); err == nil {
		t.Fatal("unsupported page size accepted")
	}
}

// In a fresh guest /run/kata-containers does not exist before the first
// storage: the root is made on demand.
func TestMountCreatesMissingRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "run/kata-containers")
	fm := newFakeMounter()
	m := New(Config{Root: root, Mounter: fm, IsMounted: fm.isMounted})
	share := &pb.Storage{Driver: "virtio-fs", Source: "kataShared", Fstype: "virtiofs", MountPoint: root + "/shared/containers/"}
	if err := m.Mount(context.Background(), "sandbox", []*pb.Storage{share}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := fm.isMounted(root + "/shared/containers"); !ok {
		t.Fatalf("share not mounted: %v", fm.calls)
	}
}
