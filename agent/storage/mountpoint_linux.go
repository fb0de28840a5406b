package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

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
	if after != nil {
		err = after(safefs.ProcPath(f))
	}
	f.Close() // before any unmount: our handle would keep the mount busy
	if err != nil {
		if uerr := m.unmount(mp.byName(), mp.key); uerr != nil {
			err = errors.Join(err, uerr)
		}
		mp.removeCreated()
		return nil, err
	}
	return m.releaser(mp.key, mp.dir, mp.created, id), nil
}

// releaser returns the undo of a mount on key: key is resolved inside
// Root again, the mount found there must be the one we made (same mount
// id), then it is unmounted and the mount point removed if we created it.
//
// The unmount goes by name from the parent's handle, and no descriptor of
// ours is open on the mount meanwhile (the check is a statx by name): a
// descriptor would keep it busy, umount2 could only detach it, and the
// file system would be shut down later, when the last reference goes (a
// close, or the exec of a child forked while the descriptor was open,
// anywhere in the agent). Unmounted for real, a block device's file
// system is written back and clean on the disk when Release returns, and
// the runtime may unplug the disk next.
func (m *Manager) releaser(key string, dir, created bool, id uint64) func() error {
	return func() error {
		parent, err := safefs.OpenInRoot(m.cfg.Root, filepath.Dir(key))
		if err != nil {
			return fmt.Errorf("unmount %s: %w", key, err)
		}
		defer parent.Close()
		mp := &mountPoint{key: key, parent: parent, name: filepath.Base(key), dir: dir, created: created}
		if m.verifyMounts {
			got, root, err := safefs.MountIDAt(parent, mp.name)
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			if err != nil || !root || got != id {
				if err == nil && !root {
					return nil // already unmounted
				}
				return fmt.Errorf("unmount %s: the mount there is not ours (mount id %d, want %d; %v): %w", key, got, id, err, errdefs.ErrFailedPrecondition)
			}
		}
		// The name cannot lead elsewhere between the check and here: the
		// parent is a handle, a symlink as the last component is not
		// followed, and only the agent mounts under Root.
		if err := m.unmount(mp.byName(), key); err != nil {
			return err
		}
		mp.removeCreated()
		return nil
	}
}

// Busy unmounts are retried for a moment before they turn lazy: a child
// forked anywhere in the agent holds copies of every descriptor open at
// the fork (our own, briefly, on the mount) until it execs.
const (
	busyRetryFor   = 200 * time.Millisecond
	busyRetryFirst = time.Millisecond
)

// byName is the path of mp's name through its parent's handle: what is
// mounted there, with no descriptor of ours on the mount itself.
func (mp *mountPoint) byName() string {
	return safefs.ProcPath(mp.parent) + "/" + mp.name
}

// unmount unmounts what is mounted at target (a symlink as its last
// component is not followed); what names the mount point in messages.
// Callers hold no descriptor on the mount, so that the unmount is not
// lazy: the file system is shut down and written back when it returns.
//
// A file system on a block device is written back first: should a copy
// of the mount live on in a namespace the agent does not see, our
// unmount would succeed and leave the file system running, and the
// runtime unplugs the disk next. When ours is the last mount, the
// unmount finds nothing left to write.
//
// A mount that stays busy (something outside the container's namespace
// holds a file on it) is written back whatever it sits on, and then
// detached: a container that still holds it must not pin the storage for
// ever, and what was written to it is on its device, though the file
// system lives on until the last holder lets go.
func (m *Manager) unmount(target, what string) error {
	// With a fake mounter nothing is mounted there to write back.
	if m.verifyMounts {
		if err := syncMount(target, what, true); err != nil {
			m.log.Warn("write back before unmounting", "mount_point", what, "error", err)
		}
	}
	err := m.cfg.Mounter.Unmount(target, unix.UMOUNT_NOFOLLOW)
	for wait, waited := busyRetryFirst, time.Duration(0); errors.Is(err, unix.EBUSY) && waited < busyRetryFor; wait *= 2 {
		time.Sleep(wait)
		waited += wait
		err = m.cfg.Mounter.Unmount(target, unix.UMOUNT_NOFOLLOW)
	}
	if errors.Is(err, unix.EBUSY) {
		if serr := syncMount(target, what, false); serr != nil {
			m.log.Warn("write back a busy mount before detaching it", "mount_point", what, "error", serr)
		}
		m.log.Info("mount busy: detached, its file system lives on", "mount_point", what)
		err = m.cfg.Mounter.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", what, err)
	}
	return nil
}

// syncMount writes back the file system mounted on the directory at
// target (syncfs(2) needs a descriptor that is not O_PATH); with
// blockOnly, only one that sits on a block device (virtio-fs would pass
// it on to the host's whole file system). A file mount point is left
// (O_DIRECTORY refuses it before anything is opened, so a FIFO cannot
// block nor a device act): it is a bind mount whose data lives in its
// source's file system.
func syncMount(target, what string, blockOnly bool) error {
	fd, err := unix.Open(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", what, err)
	}
	defer unix.Close(fd)
	if blockOnly {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat %s: %w", what, err)
		}
		if unix.Major(st.Dev) == 0 { // tmpfs, virtio-fs, overlay: no device of their own
			return nil
		}
	}
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", what, err)
	}
	return nil
}
