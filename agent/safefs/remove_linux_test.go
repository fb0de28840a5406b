package safefs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func mustWrite(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveTreeRemovesAndKeepsSymlinkTargets(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	mustWrite(t, filepath.Join(outside, "keep"))
	tree := filepath.Join(dir, "tree")
	mustWrite(t, filepath.Join(tree, "a/b/c"))
	mustWrite(t, filepath.Join(tree, "f"))
	if err := os.Symlink(outside, filepath.Join(tree, "a/link")); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTree(tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Fatalf("symlink target touched: %v", err)
	}
	if err := RemoveTree(tree); err != nil {
		t.Fatalf("missing tree: %v", err)
	}
}

// mountOrSkip mounts a tmpfs (or a bind of src) on target; root only.
func mountOrSkip(t *testing.T, src, target string) {
	t.Helper()
	var err error
	if src == "" {
		err = unix.Mount("tmpfs", target, "tmpfs", 0, "")
	} else {
		err = unix.Mount(src, target, "", unix.MS_BIND, "")
	}
	if err != nil {
		t.Skipf("mount needs root: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
}

func TestRemoveTreeRefusesToCrossMounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		bind bool // a bind mount from the same file system: same st_dev
	}{{"tmpfs", false}, {"same-fs bind", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			host := filepath.Join(dir, "host")
			mustWrite(t, filepath.Join(host, "sentinel"))
			tree := filepath.Join(dir, "tree")
			mustWrite(t, filepath.Join(tree, "mine"))
			mp := filepath.Join(tree, "deep/mnt")
			if err := os.MkdirAll(mp, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.bind {
				mountOrSkip(t, host, mp)
			} else {
				mountOrSkip(t, "", mp)
				mustWrite(t, filepath.Join(mp, "sentinel"))
			}
			err := RemoveTree(tree)
			if !errors.Is(err, ErrMountBelow) || !errdefs.IsFailedPrecondition(err) {
				t.Fatalf("err = %v, want ErrMountBelow", err)
			}
			for _, p := range []string{filepath.Join(mp, "sentinel"), filepath.Join(tree, "mine")} {
				if _, err := os.Stat(p); err != nil {
					t.Fatalf("%s removed although the tree holds a mount: %v", p, err)
				}
			}
			// The mount point itself is refused too.
			if err := RemoveTree(mp); !errors.Is(err, ErrMountBelow) {
				t.Fatalf("removing the mount point: %v", err)
			}
		})
	}
}

func TestRemoveTreeRefusesRoot(t *testing.T) {
	for _, p := range []string{"/", "relative", ""} {
		if err := RemoveTree(p); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("RemoveTree(%q) = %v", p, err)
		}
	}
}
