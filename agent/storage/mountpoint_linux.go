package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/safefs"
)

// mountPoint is a mount point opened inside Root: its parent directory as
// a handle and its name there. The mount and every step after it go
// through handles, never through the path again: part of Root (the
// share) is writable by the host, which could otherwise swap a checked
// directory for a symlink before the mount uses it.
type mountPoint struct {
	key     string // cleaned path, for messages and the reference count
	parent  *os.File
	name    string
	dir     bool
	created bool
	under   *os.File // the mount point itself, before anything is mounted on it
}

// openMountPoint resolves key's parent inside Root (creating it), then
// makes key a directory (dir) or an empty file if nothing is there. A
// symlink as the last component is refused, not followed.
func (m *Manager) openMountPoint(key string, dir bool) (*mountPoint, error) {
	parent, _, err := safefs.MkdirAllInRoot(m.cfg.Root, filepath.Dir(key), 0o755)
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", key, err)
	}
	mp := &mountPoint{key: key, parent: parent, name: filepath.Base(key), dir: dir}
	pfd := int(parent.Fd())
	if dir {
		err = unix.Mkdirat(pfd, mp.name, 0o755)
	} else {
		var fd int
		fd, err = unix.Openat(pfd, mp.name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
	}
	switch {
	case err == nil:
		mp.created = true
	case !errors.Is(err, unix.EEXIST):
		parent.Close()
		return nil, fmt.Errorf("create mount point %s: %w", key, err)
	}
	under, err := mp.open()
	if err == nil {
		err = mp.checkType(under)
		if err != nil {
			under.Close()
		}
	}
	if err != nil {
		mp.removeCreated()
		parent.Close()
		return nil, err
	}
	mp.under = under
	return mp, nil
}

// open opens the name in the parent as it is now: once something is
// mounted there, the new mount's root.
func (mp *mountPoint) open() (*os.File, error) {
	fd, err := unix.Openat(int(mp.parent.Fd()), mp.name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open mount point %s: %w", mp.key, err)
	}
	return os.NewFile(uintptr(fd), mp.key), nil
}

func (mp *mountPoint) checkType(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("stat mount point %s: %w", mp.key, err)
	}
	want, what := uint32(unix.S_IFREG), "a regular file"
	if mp.dir {
		want, what = unix.S_IFDIR, "a directory"
	}
	if st.Mode&unix.S_IFMT != want {
		return fmt.Errorf("mount point %s exists and is not %s (symlinks are not followed): %w", mp.key, what, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func (mp *mountPoint) removeCreated() {
	if !mp.created {
		return
	}
	flags := 0
	if mp.dir {
		flags = unix.AT_REMOVEDIR
	}
	_ = unix.Unlinkat(int(mp.parent.Fd()), mp.name, flags)
}

func (mp *mountPoint) Close() {
	if mp.under != nil {
		mp.under.Close()
	}
	mp.parent.Close()
}

// mounted opens the mount just made on mp and, with the real mounter,
// checks that it is a new mount's root on top of the mount point.
func (m *Manager) mounted(mp *mountPoint) (*os.File, uint64, error) {
	f, err := mp.open()
	if err != nil {
		return nil, 0, err
	}
	if !m.verifyMounts {
		return f, 0, nil
	}
	id, root, err := safefs.MountID(f)
	if err == nil {
		var below uint64
		below, _, err = safefs.MountID(mp.under)
		if err == nil && (!root || id == below) {
			err = fmt.Errorf("%s is not the new mount after mounting (replaced meanwhile?): %w", mp.key, errdefs.ErrFailedPrecondition)
		}
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("mount point %s: %w", mp.key, err)
	}
	return f, id, nil
}

// mountOn mounts source on mp through its handle, runs after on the new
// mount's root (through /proc/self/fd) and returns how to undo it all.
// On failure nothing stays mounted or created.
func (m *Manager) mountOn(mp *mountPoint, mount func(target string) error, after func(root string) error) (func() error, error) {
	if err := mount(safefs.ProcPath(mp.under)); err != nil {
		mp.removeCreated()
		return nil, err
	}
	f, id, err := m.mounted(mp)
	if err != nil {
		// The new mount cannot be named safely any more: report it
		// rather than unmount whatever the name now leads to.
		return nil, err
	}
	defer f.Close()
	if after != nil {
		if err := after(safefs.ProcPath(f)); err != nil {
			if uerr := m.unmount(safefs.ProcPath(f)); uerr != nil {
				err = errors.Join(err, uerr)
			}
			mp.removeCreated()
			return nil, err
		}
	}
	return m.releaser(mp.key, mp.dir, mp.created, id), nil
}

// releaser returns the undo of a mount on key: key is resolved inside
// Root again, the mount found there must be the one we made (same mount
// id), then it is unmounted through a handle and the mount point removed
// if we created it.
func (m *Manager) releaser(key string, dir, created bool, id uint64) func() error {
	return func() error {
		parent, err := safefs.OpenInRoot(m.cfg.Root, filepath.Dir(key))
		if err != nil {
			return fmt.Errorf("unmount %s: %w", key, err)
		}
		defer parent.Close()
		mp := &mountPoint{key: key, parent: parent, name: filepath.Base(key), dir: dir, created: created}
		f, err := mp.open()
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", key, err)
		}
		if m.verifyMounts {
			got, root, err := safefs.MountID(f)
			if err != nil || !root || got != id {
				f.Close()
				if err == nil && !root {
					return nil // already unmounted
				}
				return fmt.Errorf("unmount %s: the mount there is not ours (mount id %d, want %d; %v): %w", key, got, id, err, errdefs.ErrFailedPrecondition)
			}
		}
		// Our handle keeps the mount busy, so this detaches it.
		err = m.unmount(safefs.ProcPath(f))
		f.Close()
		if err != nil {
			return err
		}
		mp.removeCreated()
		return nil
	}
}
