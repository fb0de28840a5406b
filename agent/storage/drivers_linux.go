package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// mountDriver mounts r and returns how to undo it.
func (m *Manager) mountDriver(r *request) (func() error, error) {
	switch r.st.Driver {
	case DriverVirtioFS:
		return m.mountFS(r.st.Source, r.target, "virtiofs", r.opts, true)
	case Driver9p:
		return m.mountFS(r.st.Source, r.target, "9p", r.opts, true)
	case DriverLocal:
		return m.mountLocal(r)
	case DriverEphemeral:
		return m.mountEphemeral(r)
	case DriverBind:
		return m.mountBind(r.st.Source, r.target, r.opts)
	case DriverWatchableBind:
		return m.mountWatchable(r)
	case DriverBlk, DriverMMIOBlk, DriverSCSI:
		release, err := m.mountFS(r.device, r.target, r.st.Fstype, r.opts, true)
		if err != nil {
			return nil, err
		}
		if !r.opts.ReadOnly() {
			if err := applyFSGroup(r.target, r.st.FsGroup); err != nil {
				return nil, errors.Join(err, release())
			}
		}
		return release, nil
	case DriverOverlayFS:
		return m.mountOverlay(r)
	}
	return nil, invalid("unknown storage driver %q", short(r.st.Driver))
}

// mountFS creates target (a directory) and mounts source on it. The
// returned release unmounts it and removes the directory if we made it.
func (m *Manager) mountFS(source, target, fstype string, opts MountOptions, mkdir bool) (func() error, error) {
	created := false
	if mkdir {
		var err error
		if created, err = mkdirAll(target, 0o755); err != nil {
			return nil, err
		}
	}
	if err := m.cfg.Mounter.Mount(source, target, fstype, opts.Flags, opts.DataString()); err != nil {
		if created {
			_ = os.Remove(target)
		}
		return nil, fmt.Errorf("mount %s %s on %s (options %q): %w", fstype, source, target, opts.DataString(), err)
	}
	if err := m.propagate(target, opts); err != nil {
		return nil, errors.Join(err, m.unmount(target))
	}
	return func() error {
		if err := m.unmount(target); err != nil {
			return err
		}
		if created {
			_ = os.Remove(target)
		}
		return nil
	}, nil
}

func (m *Manager) propagate(target string, opts MountOptions) error {
	if opts.Propagation == 0 {
		return nil
	}
	if err := m.cfg.Mounter.Mount("", target, "", opts.Propagation, ""); err != nil {
		return fmt.Errorf("set propagation of %s: %w", target, err)
	}
	return nil
}

// unmount unmounts target, lazily if it is busy: a container that still
// holds it open must not keep the storage pinned forever.
func (m *Manager) unmount(target string) error {
	err := m.cfg.Mounter.Unmount(target, 0)
	if errors.Is(err, unix.EBUSY) {
		err = m.cfg.Mounter.Unmount(target, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

func mkdirAll(dir string, mode os.FileMode) (created bool, err error) {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return false, fmt.Errorf("mount point %s exists and is not a directory: %w", dir, errdefs.ErrFailedPrecondition)
		}
		return false, nil
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return false, fmt.Errorf("create mount point: %w", err)
	}
	return true, nil
}

// mountLocal makes a directory (the runtime's disk-backed emptyDir); the
// mode option sets its permissions.
func (m *Manager) mountLocal(r *request) (func() error, error) {
	mode := os.FileMode(0o755)
	if v, ok := r.opts.Value("mode"); ok {
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n > 0o7777 {
			return nil, invalid("mode %q is not an octal permission", short(v))
		}
		mode = os.FileMode(n)
	}
	created, err := mkdirAll(r.target, 0o755)
	if err != nil {
		return nil, err
	}
	// Chmod after creation: the umask must not narrow the requested mode.
	if err := os.Chmod(r.target, unixMode(mode)); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", r.target, err)
	}
	if err := applyFSGroup(r.target, r.st.FsGroup); err != nil {
		return nil, err
	}
	target := r.target
	return func() error {
		if !created {
			return nil
		}
		if err := os.RemoveAll(target); err != nil {
			return fmt.Errorf("remove %s: %w", target, err)
		}
		return nil
	}, nil
}

// unixMode maps permission bits including setuid/setgid/sticky to Go's
// FileMode bits.
func unixMode(n os.FileMode) os.FileMode {
	mode := n & 0o777
	if n&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if n&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if n&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

func (m *Manager) mountEphemeral(r *request) (func() error, error) {
	fstype := r.st.Fstype
	if fstype == "" {
		fstype = "tmpfs"
	}
	source := r.st.Source
	if source == "" {
		source = fstype
	}
	opts := r.opts
	if fstype == "hugetlbfs" {
		var err error
		if opts, err = m.prepareHugepages(opts); err != nil {
			return nil, err
		}
	}
	release, err := m.mountFS(source, r.target, fstype, opts, true)
	if err != nil {
		return nil, err
	}
	if err := applyFSGroup(r.target, r.st.FsGroup); err != nil {
		return nil, errors.Join(err, release())
	}
	return release, nil
}

// prepareHugepages makes sure the pool of the requested page size has
// enough free pages for size, and normalises pagesize for the kernel.
func (m *Manager) prepareHugepages(opts MountOptions) (MountOptions, error) {
	psv, ok := opts.Value("pagesize")
	if !ok {
		return opts, nil
	}
	pagesize, err := parseSize(psv)
	if err != nil || pagesize == 0 {
		return opts, invalid("hugetlbfs pagesize %q: not a size", short(psv))
	}
	out := opts.Without("pagesize")
	out.Data = append(out.Data, fmt.Sprintf("pagesize=%d", pagesize))
	sv, ok := opts.Value("size")
	if !ok {
		return out, nil
	}
	size, err := parseSize(sv)
	if err != nil {
		return opts, invalid("hugetlbfs size %q: not a size", short(sv))
	}
	need := (size + pagesize - 1) / pagesize
	pool := filepath.Join(m.cfg.SysfsRoot, "kernel/mm/hugepages", fmt.Sprintf("hugepages-%dkB", pagesize/1024))
	free, err := readUint(filepath.Join(pool, "free_hugepages"))
	if err != nil {
		return opts, fmt.Errorf("hugepage size %d not supported by the guest kernel: %w", pagesize, err)
	}
	if free >= need {
		return out, nil
	}
	total, err := readUint(filepath.Join(pool, "nr_hugepages"))
	if err != nil {
		return opts, err
	}
	want := total + need - free
	if err := os.WriteFile(filepath.Join(pool, "nr_hugepages"), []byte(strconv.FormatUint(want, 10)), 0); err != nil {
		return opts, fmt.Errorf("grow hugepage pool %s to %d pages: %w", pool, want, err)
	}
	if got, err := readUint(filepath.Join(pool, "nr_hugepages")); err != nil || got < want {
		return opts, fmt.Errorf("hugepage pool %s holds %d pages, %d needed: %w", pool, got, want, errdefs.ErrResourceExhausted)
	}
	return out, nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}

// parseSize reads a byte count with an optional k/m/g suffix (binary).
func parseSize(s string) (uint64, error) {
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "m"), strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "g"), strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > (1<<63)/mult {
		return 0, fmt.Errorf("size %s overflows", s)
	}
	return n * mult, nil
}

// mountBind bind-mounts source on target (made a directory or an empty
// file to match source), then applies flags such as ro with a remount,
// which a first bind mount ignores.
func (m *Manager) mountBind(source, target string, opts MountOptions) (func() error, error) {
	fi, err := os.Stat(source)
	if err != nil {
		return nil, fmt.Errorf("bind source: %w", err)
	}
	created := false
	if fi.IsDir() {
		if created, err = mkdirAll(target, 0o755); err != nil {
			return nil, err
		}
	} else if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, fmt.Errorf("create parent of %s: %w", target, err)
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create bind target: %w", err)
		}
		f.Close()
		created = true
	}
	cleanup := func() {
		if created {
			_ = os.Remove(target)
		}
	}
	bindFlags := uintptr(unix.MS_BIND) | opts.Flags&unix.MS_REC
	if err := m.cfg.Mounter.Mount(source, target, "", bindFlags, ""); err != nil {
		cleanup()
		return nil, fmt.Errorf("bind %s on %s: %w", source, target, err)
	}
	rest := opts.Flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT)
	if rest != 0 {
		if err := m.cfg.Mounter.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|rest, ""); err != nil {
			_ = m.unmount(target)
			cleanup()
			return nil, fmt.Errorf("remount bind %s with flags %#x: %w", target, rest, err)
		}
	}
	if err := m.propagate(target, opts); err != nil {
		_ = m.unmount(target)
		cleanup()
		return nil, err
	}
	return func() error {
		if err := m.unmount(target); err != nil {
			return err
		}
		cleanup()
		return nil
	}, nil
}

// mountOverlay creates upperdir and workdir (which must lie under Root)
// and mounts the overlay.
func (m *Manager) mountOverlay(r *request) (func() error, error) {
	for _, key := range []string{"upperdir", "workdir"} {
		v, ok := r.opts.Value(key)
		if !ok {
			continue
		}
		_, dir, err := Confine(m.cfg.Root, v)
		if err != nil {
			return nil, fmt.Errorf("overlay %s: %w", key, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create overlay %s: %w", key, err)
		}
	}
	lower, _ := r.opts.Value("lowerdir")
	for _, l := range strings.Split(lower, ":") {
		if !filepath.IsAbs(l) {
			return nil, invalid("overlay lowerdir %q is not absolute", short(l))
		}
	}
	source := r.st.Source
	if source == "" {
		source = "overlay"
	}
	return m.mountFS(source, r.target, "overlay", r.opts, true)
}

// applyFSGroup gives group gid ownership of everything under root with
// group read/write, as Kubernetes' fsGroup asks. With OnRootMismatch the
// walk is skipped when the root already has the group and permissions.
func applyFSGroup(root string, fg *pb.FSGroup) error {
	if fg == nil {
		return nil
	}
	gid := int(fg.GetGroupId())
	if fg.GetGroupChangePolicy() == typespb.FSGroupChangePolicy_OnRootMismatch {
		var st unix.Stat_t
		if err := unix.Stat(root, &st); err == nil && int(st.Gid) == gid && st.Mode&0o2070 == 0o2070 {
			return nil
		}
	}
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("fs_group walk %s: %w", path, err)
		}
		if err := os.Lchown(path, -1, gid); err != nil {
			return fmt.Errorf("fs_group chown %s: %w", path, err)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		newMode := mode | 0o060
		if mode&0o100 != 0 || d.IsDir() {
			newMode |= 0o010
		}
		if d.IsDir() {
			newMode |= os.ModeSetgid
		}
		if newMode != mode {
			if err := os.Chmod(path, newMode); err != nil {
				return fmt.Errorf("fs_group chmod %s: %w", path, err)
			}
		}
		return nil
	})
}

// UpdateEphemeral applies new options (a resized sizeLimit) to mounted
// tmpfs ephemeral storages by remounting them.
func (m *Manager) UpdateEphemeral(storages []*pb.Storage) error {
	for i, st := range storages {
		if st == nil {
			return invalid("storage %d is empty", i)
		}
		if st.Driver != DriverEphemeral {
			return invalid("storage %d: driver %q is not ephemeral", i, short(st.Driver))
		}
		if st.Fstype != "tmpfs" {
			return invalid("storage %d: only tmpfs ephemeral storages can be updated, not %q", i, short(st.Fstype))
		}
		key, target, err := Confine(m.cfg.Root, st.MountPoint)
		if err != nil {
			return fmt.Errorf("storage %d: %w", i, err)
		}
		opts, err := ParseOptions(st.Options)
		if err != nil {
			return fmt.Errorf("storage %d: %w", i, err)
		}
		if mounted, err := m.cfg.IsMounted(target); err != nil || !mounted {
			return fmt.Errorf("storage %d: %s is not mounted: %w", i, key, errdefs.ErrNotFound)
		}
		if err := m.cfg.Mounter.Mount(st.Source, target, "tmpfs", opts.Flags|unix.MS_REMOUNT, opts.DataString()); err != nil {
			return fmt.Errorf("remount %s with %q: %w", key, opts.DataString(), err)
		}
	}
	return nil
}
