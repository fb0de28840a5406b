package safefs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// The functions below resolve a path inside a root directory as if that
// directory were "/" (symlinks, "..", absolute link targets all stay
// inside), with openat2(RESOLVE_IN_ROOT) where the kernel has it, and
// hand back an O_PATH handle. Operating on the handle (mounting through
// ProcPath, for instance) leaves no window between checking a path and
// using it in which a host writing the share could swap a component for
// a symlink.

// relIn returns p relative to root; p must be root itself or below it.
func relIn(root, p string) (string, error) {
	root, p = filepath.Clean(root), filepath.Clean(p)
	if p == root {
		return ".", nil
	}
	rel, ok := strings.CutPrefix(p, root+"/")
	if !ok || !filepath.IsAbs(p) {
		return "", fmt.Errorf("path %q is outside %s: %w", p, root, errdefs.ErrInvalidArgument)
	}
	return rel, nil
}

func openRoot(root string) (*os.File, error) {
	f, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", root, err)
	}
	return f, nil
}

// OpenInRoot resolves p (an absolute path below root) inside root and
// returns an O_PATH handle to what it names.
func OpenInRoot(root, p string) (*os.File, error) {
	rel, err := relIn(root, p)
	if err != nil {
		return nil, err
	}
	rf, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer rf.Close()
	f, err := pathrs.OpenatInRoot(rf, rel)
	if err != nil {
		return nil, fmt.Errorf("resolve %s inside %s: %w", p, root, err)
	}
	return f, nil
}

// MkdirAllInRoot creates the directory p (an absolute path below root)
// and its missing parents inside root with mode, and returns an O_PATH
// handle to it and whether p itself was created. root itself is created
// if missing: it is the caller's own path, not one a request names.
func MkdirAllInRoot(root, p string, mode os.FileMode) (*os.File, bool, error) {
	rel, err := relIn(root, p)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, false, fmt.Errorf("create root %s: %w", root, err)
	}
	rf, err := openRoot(root)
	if err != nil {
		return nil, false, err
	}
	defer rf.Close()
	if f, err := pathrs.OpenatInRoot(rf, rel); err == nil {
		if err := IsDir(f); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("%s: %w", p, err)
		}
		return f, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("resolve %s inside %s: %w", p, root, err)
	}
	f, err := pathrs.MkdirAllHandle(rf, rel, mode)
	if err != nil {
		return nil, false, fmt.Errorf("create %s inside %s: %w", p, root, err)
	}
	return f, true, nil
}

// IsDir checks that a handle names a directory.
func IsDir(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("exists and is not a directory: %w", errdefs.ErrFailedPrecondition)
	}
	return nil
}

// ProcPath is the /proc/self/fd path of a handle: system calls that take
// a path (mount(2), chmod(2)) reach exactly the handle's file through it.
func ProcPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// MountIDAt is MountID for name in dir, without opening it (a symlink is
// not followed): no descriptor of ours then holds the mount, which an
// unmount that must not be lazy needs.
func MountIDAt(dir *os.File, name string) (id uint64, isRoot bool, err error) {
	return mountID(int(dir.Fd()), name, unix.AT_SYMLINK_NOFOLLOW)
}

// MountID is the id of the mount a handle lies on (statx STATX_MNT_ID),
// and whether the handle is that mount's root.
func MountID(f *os.File) (id uint64, isRoot bool, err error) {
	return mountID(int(f.Fd()), "", unix.AT_EMPTY_PATH)
}

func mountID(dirfd int, name string, flags int) (id uint64, isRoot bool, err error) {
	var st unix.Statx_t
	if err := unix.Statx(dirfd, name, flags|unix.AT_STATX_SYNC_AS_STAT, unix.STATX_MNT_ID, &st); err != nil {
		return 0, false, fmt.Errorf("statx: %w", err)
	}
	if st.Mask&unix.STATX_MNT_ID == 0 {
		return 0, false, fmt.Errorf("statx: kernel reports no mount id: %w", errdefs.ErrNotImplemented)
	}
	return st.Mnt_id, st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}
