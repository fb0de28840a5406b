package storage

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
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
	lower := t.TempDir()
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
