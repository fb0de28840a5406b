// Package safefs holds file-system operations that never leave the tree
// they were given: removal that refuses to cross a mount point, and path
// resolution confined to a root without a check-then-use race.
package safefs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ErrMountBelow is wrapped by RemoveTree's error when a mount point lies in
// the tree: removing through it would delete another file system's files
// (the host's, for the virtio-fs share).
var ErrMountBelow = fmt.Errorf("a mount point lies below: %w", errdefs.ErrFailedPrecondition)

// RemoveTree removes path and everything below it like os.RemoveAll, but
// never crosses a mount point: it first walks the tree and, if any entry
// (path itself included) is the root of a mount, removes nothing and
// returns an error wrapping ErrMountBelow that names it. Symlinks are
// removed, never followed; every step is relative to an open directory,
// so a rename during the walk cannot redirect it. A missing path is not
// an error.
func RemoveTree(path string) error {
	path = filepath.Clean(path)
	if path == "/" || !filepath.IsAbs(path) {
		return fmt.Errorf("remove %q: not an absolute path below /: %w", path, errdefs.ErrInvalidArgument)
	}
	pfd, err := unix.Open(filepath.Dir(path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: open parent: %w", path, err)
	}
	defer unix.Close(pfd)
	return removeAt(pfd, filepath.Base(path), path)
}

// RemoveTreeAt is RemoveTree for the entry name of the open directory
// parent (display names it in errors).
func RemoveTreeAt(parent *os.File, name, display string) error {
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return fmt.Errorf("remove %q: not a directory entry: %w", name, errdefs.ErrInvalidArgument)
	}
	return removeAt(int(parent.Fd()), name, display)
}

func removeAt(pfd int, name, display string) error {
	parent, err := statAt(pfd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("remove %s: %w", display, err)
	}
	// Check everything first, so a tree with a mount in it is left whole.
	if err := walkAt(pfd, parent, name, display, false); err != nil {
		return err
	}
	return walkAt(pfd, parent, name, display, true)
}

// walkAt visits name in dirfd (whose statx is dir) and everything below
// it, refusing mount points; with remove set it deletes bottom-up.
func walkAt(dirfd int, dir *unix.Statx_t, name, display string, remove bool) error {
	st, err := statAt(dirfd, name, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", display, err)
	}
	if isMountRoot(dir, st) {
		return fmt.Errorf("remove %s: %w", display, ErrMountBelow)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if !remove {
			return nil
		}
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s: %w", display, err)
		}
		return nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("remove %s: open: %w", display, err)
	}
	f := os.NewFile(uintptr(fd), display)
	defer f.Close()
	// The open directory must be the one checked above, not something
	// swapped in since.
	self, err := statAt(fd, "", unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("remove %s: %w", display, err)
	}
	if self.Ino != st.Ino || self.Dev_major != st.Dev_major || self.Dev_minor != st.Dev_minor || isMountRoot(dir, self) {
		return fmt.Errorf("remove %s: changed while being removed: %w", display, errdefs.ErrFailedPrecondition)
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("remove %s: read directory: %w", display, err)
	}
	for _, n := range names {
		if err := walkAt(fd, self, n, display+"/"+n, remove); err != nil {
			return err
		}
	}
	if !remove {
		return nil
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", display, err)
	}
	return nil
}

func statAt(dirfd int, name string, flags int) (*unix.Statx_t, error) {
	var st unix.Statx_t
	err := unix.Statx(dirfd, name, flags|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_TYPE|unix.STATX_INO|unix.STATX_MNT_ID, &st)
	if err != nil {
		return nil, fmt.Errorf("statx %q: %w", name, err)
	}
	return &st, nil
}

// isMountRoot reports whether child (an entry of parent) is the root of a
// mount: the kernel's attribute where it reports one, else a mount id or
// device that differs from the parent's.
func isMountRoot(parent, child *unix.Statx_t) bool {
	if child.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && child.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return true
	}
	if parent.Mask&child.Mask&unix.STATX_MNT_ID != 0 && parent.Mnt_id != child.Mnt_id {
		return true
	}
	return parent.Dev_major != child.Dev_major || parent.Dev_minor != child.Dev_minor
}
