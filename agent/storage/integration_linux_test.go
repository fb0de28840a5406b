package storage

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// These tests mount for real and need root.
func realManager(t *testing.T) (*Manager, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	root := t.TempDir()
	m := New(Config{Root: root})
	t.Cleanup(func() {
		// Whatever a failed test left behind must not outlive it.
		_ = m.Release(context.Background(), "c1")
		_ = m.Release(context.Background(), "c2")
	})
	return m, root
}

func mounted(t *testing.T, p string) bool {
	t.Helper()
	ok, err := mountinfo.Mounted(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return ok
}

// shareTwice mounts st for c1 and c2 and checks that it stays until both
// released it.
func shareTwice(t *testing.T, m *Manager, st *pb.Storage, check func(stillThere bool)) {
	t.Helper()
	ctx := context.Background()
	if err := m.Mount(ctx, "c1", []*pb.Storage{st}); err != nil {
		t.Fatal(err)
	}
	if err := m.Mount(ctx, "c2", []*pb.Storage{st}); err != nil {
		t.Fatal(err)
	}
	check(true)
	if err := m.Release(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	check(true)
	if err := m.Release(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	check(false)
}

func TestRealEphemeralTmpfs(t *testing.T) {
	m, root := realManager(t)
	mp := filepath.Join(root, "sandbox/ephemeral/vol")
	st := &pb.Storage{Driver: "ephemeral", Source: "tmpfs", Fstype: "tmpfs", MountPoint: mp,
		Options: []string{"nodev", "nosuid", "mode=1777", "size=1048576"}}
	shareTwice(t, m, st, func(there bool) {
		if mounted(t, mp) != there {
			t.Fatalf("tmpfs mounted = %v, want %v", !there, there)
		}
		if !there {
			return
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(mp, &sfs); err != nil {
			t.Fatal(err)
		}
		if sfs.Type != unix.TMPFS_MAGIC || sfs.Blocks*uint64(sfs.Bsize) != 1<<20 {
			t.Fatalf("not a 1 MiB tmpfs: type %#x size %d", sfs.Type, sfs.Blocks*uint64(sfs.Bsize))
		}
		fi, _ := os.Stat(mp)
		if fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
			t.Fatalf("mode %v, want sticky 0777", fi.Mode())
		}
	})
	// UpdateEphemeralMounts grows it in place.
	ctx := context.Background()
	if err := m.Mount(ctx, "c1", []*pb.Storage{st}); err != nil {
		t.Fatal(err)
	}
	upd := &pb.Storage{Driver: "ephemeral", Source: "tmpfs", Fstype: "tmpfs", MountPoint: mp, Options: []string{"size=2097152"}}
	if err := m.UpdateEphemeral([]*pb.Storage{upd}); err != nil {
		t.Fatal(err)
	}
	var sfs unix.Statfs_t
	unix.Statfs(mp, &sfs)
	if sfs.Blocks*uint64(sfs.Bsize) != 2<<20 {
		t.Fatalf("size after update %d", sfs.Blocks*uint64(sfs.Bsize))
	}
}

func TestRealLocal(t *testing.T) {
	m, root := realManager(t)
	mp := filepath.Join(root, "sandbox/local/vol")
	st := &pb.Storage{Driver: "local", Source: "local", Fstype: "local", MountPoint: mp, Options: []string{"mode=0777"}}
	shareTwice(t, m, st, func(there bool) {
		fi, err := os.Stat(mp)
		if !there {
			if err == nil {
				t.Fatal("local directory left after the last release")
			}
			return
		}
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 {
			t.Fatalf("local dir: %v %v", fi, err)
		}
		// Data written by one container is seen by the other until the end.
		os.WriteFile(filepath.Join(mp, "f"), []byte("x"), 0o644)
	})
}

func TestRealBind(t *testing.T) {
	m, root := realManager(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "hello"), []byte("world"), 0o644)
	mp := filepath.Join(root, "shared/containers/c1/vol")
	st := &pb.Storage{Driver: "bind", Source: src, Fstype: "bind", MountPoint: mp, Options: []string{"rbind", "ro"}}
	shareTwice(t, m, st, func(there bool) {
		if mounted(t, mp) != there {
			t.Fatalf("bind mounted = %v, want %v", !there, there)
		}
		if !there {
			return
		}
		b, err := os.ReadFile(filepath.Join(mp, "hello"))
		if err != nil || string(b) != "world" {
			t.Fatalf("read through bind: %q %v", b, err)
		}
		if err := os.WriteFile(filepath.Join(mp, "new"), nil, 0o644); err == nil {
			t.Fatal("ro bind mount is writable")
		}
	})
	// A file source gets a file mount point.
	srcFile := filepath.Join(src, "hello")
	fmp := filepath.Join(root, "shared/containers/c1/file")
	fst := &pb.Storage{Driver: "bind", Source: srcFile, Fstype: "bind", MountPoint: fmp}
	shareTwice(t, m, fst, func(there bool) {
		if mounted(t, fmp) != there {
			t.Fatalf("file bind mounted = %v, want %v", !there, there)
		}
	})
}

func TestRealOverlay(t *testing.T) {
	m, root := realManager(t)
	lower := filepath.Join(root, "sandbox/layers/l1")
	os.MkdirAll(lower, 0o755)
	os.WriteFile(filepath.Join(lower, "base"), []byte("lower"), 0o644)
	upper := filepath.Join(root, "sandbox/overlay/upper")
	work := filepath.Join(root, "sandbox/overlay/work")
	mp := filepath.Join(root, "shared/containers/c1/rootfs")
	st := &pb.Storage{Driver: "overlayfs", Source: "overlay", Fstype: "overlay", MountPoint: mp,
		Options: []string{"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work}}
	shareTwice(t, m, st, func(there bool) {
		if mounted(t, mp) != there {
			t.Fatalf("overlay mounted = %v, want %v", !there, there)
		}
		if !there {
			return
		}
		if b, err := os.ReadFile(filepath.Join(mp, "base")); err != nil || string(b) != "lower" {
			t.Fatalf("lower file through overlay: %q %v", b, err)
		}
		if err := os.WriteFile(filepath.Join(mp, "top"), []byte("up"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(filepath.Join(upper, "top")); err != nil {
		t.Fatalf("write did not land in upperdir: %v", err)
	}
	// An upperdir outside the root is refused.
	bad := &pb.Storage{Driver: "overlayfs", MountPoint: mp, Options: []string{"lowerdir=" + lower, "upperdir=/tmp/up", "workdir=" + work}}
	if err := m.Mount(context.Background(), "c1", []*pb.Storage{bad}); err == nil {
		t.Fatal("upperdir outside root accepted")
	}
	// So is a lowerdir outside the root, as any layer of several.
	outside := t.TempDir()
	for _, l := range []string{outside, lower + ":" + outside} {
		bad := &pb.Storage{Driver: "overlayfs", MountPoint: mp, Options: []string{"lowerdir=" + l, "upperdir=" + upper, "workdir=" + work}}
		if err := m.Mount(context.Background(), "c1", []*pb.Storage{bad}); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("lowerdir %s: err = %v, want InvalidArgument", l, err)
		}
	}
}

// A symlink planted in the (host-writable) share cannot lead a layer or a
// mount point out of the root: it resolves as if the root were "/".
func TestRealSymlinkEscapes(t *testing.T) {
	m, root := realManager(t)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o644)
	share := filepath.Join(root, "shared/containers")
	os.MkdirAll(share, 0o755)
	if err := os.Symlink(outside, filepath.Join(share, "evil")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Overlay lower layer through the link: the layer is root/<outside>
	// (missing), never the host directory.
	inRoot := filepath.Join(root, outside)
	upper, work := filepath.Join(root, "sandbox/o/upper"), filepath.Join(root, "sandbox/o/work")
	mp := filepath.Join(share, "c1/rootfs")
	st := &pb.Storage{Driver: "overlayfs", Source: "overlay", MountPoint: mp,
		Options: []string{"lowerdir=" + share + "/evil", "upperdir=" + upper, "workdir=" + work}}
	if err := m.Mount(ctx, "c1", []*pb.Storage{st}); err == nil {
		if _, err := os.Stat(filepath.Join(mp, "secret")); err == nil {
			t.Fatal("overlay lowerdir followed a symlink out of the root")
		}
		m.Release(ctx, "c1")
	}
	os.MkdirAll(inRoot, 0o755)
	os.WriteFile(filepath.Join(inRoot, "inside"), nil, 0o644)
	if err := m.Mount(ctx, "c1", []*pb.Storage{st}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mp, "inside")); err != nil {
		t.Fatalf("lowerdir not resolved inside the root: %v", err)
	}
	if err := m.Release(ctx, "c1"); err != nil {
		t.Fatal(err)
	}

	// A mount point below the link lands inside the root too.
	tmp := &pb.Storage{Driver: "ephemeral", Fstype: "tmpfs", MountPoint: share + "/evil/vol"}
	if err := m.Mount(ctx, "c1", []*pb.Storage{tmp}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "vol")); err == nil {
		t.Fatal("mount point created outside the root")
	}
	if !mounted(t, filepath.Join(inRoot, "vol")) {
		t.Fatal("tmpfs not mounted at the in-root resolution of the link")
	}
	if err := m.Release(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if mounted(t, filepath.Join(inRoot, "vol")) {
		t.Fatal("tmpfs left mounted")
	}
	// A symlink as the mount point itself is refused, not followed.
	link := &pb.Storage{Driver: "ephemeral", Fstype: "tmpfs", MountPoint: share + "/evil"}
	if err := m.Mount(ctx, "c1", []*pb.Storage{link}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("mount on a symlink: err = %v, want FailedPrecondition", err)
	}
	if mounted(t, outside) {
		t.Fatal("mounted through the symlink")
	}
}

func TestRealFSGroup(t *testing.T) {
	m, root := realManager(t)
	mp := filepath.Join(root, "sandbox/ephemeral/grp")
	st := &pb.Storage{Driver: "ephemeral", Fstype: "tmpfs", MountPoint: mp, FsGroup: &pb.FSGroup{GroupId: 4242}}
	if err := m.Mount(context.Background(), "c1", []*pb.Storage{st}); err != nil {
		t.Fatal(err)
	}
	var s unix.Stat_t
	if err := unix.Stat(mp, &s); err != nil {
		t.Fatal(err)
	}
	if s.Gid != 4242 || s.Mode&0o2070 != 0o2070 {
		t.Fatalf("gid %d mode %o", s.Gid, s.Mode)
	}
}

// The host may swap a directory of the share for a symlink at any time:
// the mount must never land where the symlink points outside the root
// (no check-then-use window between resolving and mounting).
func TestRealMountPointSwapRace(t *testing.T) {
	m, root := realManager(t)
	outside := t.TempDir()
	share := filepath.Join(root, "shared/containers")
	os.MkdirAll(filepath.Join(share, "c"), 0o755)
	if err := os.Symlink(outside, filepath.Join(share, "alt")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
		for i := len(infos) - 1; i >= 0; i-- {
			_ = unix.Unmount(infos[i].Mountpoint, unix.MNT_DETACH)
		}
	})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		a, b := filepath.Join(share, "c"), filepath.Join(share, "alt")
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
		}
	}()
	ctx := context.Background()
	st := &pb.Storage{Driver: "ephemeral", Fstype: "tmpfs", MountPoint: share + "/c/vol"}
	for i := 0; i < 300; i++ {
		_ = m.Mount(ctx, "c1", []*pb.Storage{st})
		if _, err := os.Lstat(filepath.Join(outside, "vol")); err == nil {
			close(stop)
			<-done
			t.Fatalf("iteration %d: mount point created outside the root through the swapped symlink", i)
		}
		_ = m.Release(ctx, "c1")
	}
	close(stop)
	<-done
	if infos, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(outside)); len(infos) > 0 {
		t.Fatalf("mounted outside the root: %v", infos[0].Mountpoint)
	}
}

// fsgid=N (a pod's fsGroup) is not a mount option: tmpfs refuses it. The
// mount point gets group N, the setgid bit and group rwx instead.
func TestRealFSGidOption(t *testing.T) {
	m, root := realManager(t)
	ctx := context.Background()
	for _, st := range []*pb.Storage{
		{Driver: "ephemeral", Source: "tmpfs", Fstype: "tmpfs", MountPoint: filepath.Join(root, "sandbox/ephemeral/e"), Options: []string{"fsgid=4242", "size=1m"}},
		{Driver: "local", Source: "local", Fstype: "local", MountPoint: filepath.Join(root, "sandbox/local/l"), Options: []string{"mode=0755", "fsgid=4242"}},
	} {
		t.Run(st.Driver, func(t *testing.T) {
			if err := m.Mount(ctx, "c1", []*pb.Storage{st}); err != nil {
				t.Fatal(err)
			}
			defer m.Release(ctx, "c1")
			var s unix.Stat_t
			if err := unix.Stat(st.MountPoint, &s); err != nil {
				t.Fatal(err)
			}
			if s.Gid != 4242 || s.Mode&unix.S_ISGID == 0 || s.Mode&0o070 != 0o070 {
				t.Fatalf("gid %d mode %o, want group 4242 with setgid and g+rwx", s.Gid, s.Mode&0o7777)
			}
			if st.Driver == "ephemeral" && !mounted(t, st.MountPoint) {
				t.Fatal("tmpfs not mounted")
			}
		})
	}
	bad := &pb.Storage{Driver: "ephemeral", Fstype: "tmpfs", MountPoint: filepath.Join(root, "sandbox/ephemeral/b"), Options: []string{"fsgid=x"}}
	if err := m.Mount(ctx, "c1", []*pb.Storage{bad}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("fsgid=x: err = %v, want InvalidArgument", err)
	}
}

// Storage.fs_group (block volumes): the whole tree gets the group, files
// ug+rw, directories ug+rwx and setgid; symlink targets are not touched;
// OnRootMismatch skips the walk when the root is already right.
func TestApplyFSGroupPolicy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "d"), 0o700)
	os.WriteFile(filepath.Join(dir, "d/f"), nil, 0o600)
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, nil, 0o600)
	os.Symlink(target, filepath.Join(dir, "link"))
	gid := func(p string) (uint32, uint32) {
		var s unix.Stat_t
		if err := unix.Lstat(p, &s); err != nil {
			t.Fatal(err)
		}
		return s.Gid, s.Mode & 0o7777
	}
	if err := applyFSGroup(dir, &pb.FSGroup{GroupId: 4300}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]uint32{dir: 0o2770, filepath.Join(dir, "d"): 0o2770, filepath.Join(dir, "d/f"): 0o660} {
		if g, mode := gid(p); g != 4300 || mode&want != want {
			t.Fatalf("%s: gid %d mode %o, want 4300 and %o", p, g, mode, want)
		}
	}
	if g, mode := gid(target); g == 4300 || mode != 0o600 {
		t.Fatalf("symlink target changed: gid %d mode %o", g, mode)
	}
	// The root is right: OnRootMismatch leaves a changed child alone,
	// Always fixes it.
	os.Chown(filepath.Join(dir, "d/f"), -1, 0)
	onMismatch := &pb.FSGroup{GroupId: 4300, GroupChangePolicy: typespb.FSGroupChangePolicy_OnRootMismatch}
	if err := applyFSGroup(dir, onMismatch); err != nil {
		t.Fatal(err)
	}
	if g, _ := gid(filepath.Join(dir, "d/f")); g != 0 {
		t.Fatal("OnRootMismatch walked a tree whose root was right")
	}
	if err := applyFSGroup(dir, &pb.FSGroup{GroupId: 4300}); err != nil {
		t.Fatal(err)
	}
	if g, _ := gid(filepath.Join(dir, "d/f")); g != 4300 {
		t.Fatal("Always did not walk the tree")
	}
}
