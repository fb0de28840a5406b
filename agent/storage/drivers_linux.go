package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/agent/safefs"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// mountBlock mounts the block device resolved for r and gives the
// filesystem to the pod's fsGroup.
func (m *Manager) mountBlock(r *request) (func() error, error) {
	return m.mountFS(r.device, r, r.st.Fstype, r.opts, func(root string) error {
		if r.opts.ReadOnly() {
			return nil // nothing can be chowned on a read-only mount
		}
		return applyFSGroup(root, r.st.FsGroup)
	})
}

// mountFS mounts source on the directory r.key (created inside Root if
// missing) and runs after on the new mount's root. The returned release
// unmounts it and removes the directory if we made it.
func (m *Manager) mountFS(source string, r *request, fstype string, opts MountOptions, after func(root string) error) (func() error, error) {
	mp, err := m.openMountPoint(r.key, true)
	if err != nil {
		return nil, err
	}
	defer mp.Close()
	return m.mountOn(mp, func(target string) error {
		if err := m.cfg.Mounter.Mount(source, target, fstype, opts.Flags, opts.DataString()); err != nil {
			return fmt.Errorf("mount %s %s on %s (options %q): %w", fstype, source, r.key, opts.DataString(), err)
		}
		return nil
	}, func(root string) error {
		if err := m.propagate(root, r.key, opts); err != nil {
			return err
		}
		if after != nil {
			return after(root)
		}
		return nil
	})
}

func (m *Manager) propagate(target, key string, opts MountOptions) error {
	if opts.Propagation == 0 {
		return nil
	}
	if err := m.cfg.Mounter.Mount("", target, "", opts.Propagation, ""); err != nil {
		return fmt.Errorf("set propagation of %s: %w", key, err)
	}
	return nil
}

// mountLocal makes a directory (the runtime's disk-backed emptyDir); the
// mode option sets its permissions, fsgid its group.
func (m *Manager) mountLocal(r *request) (func() error, error) {
	mode := os.FileMode(0o755)
	if v, ok := r.opts.Value("mode"); ok {
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n > 0o7777 {
			return nil, hostinput.Invalid("mode %q is not an octal permission", hostinput.Clip(v))
		}
		mode = os.FileMode(n)
	}
	mp, err := m.openMountPoint(r.key, true)
	if err != nil {
		return nil, err
	}
	defer mp.Close()
	dir := safefs.ProcPath(mp.under)
	err = os.Chmod(dir, unixMode(mode)) // after creation: the umask must not narrow the mode
	if err == nil && r.fsGID >= 0 {
		err = setFSGid(dir, r.fsGID)
	}
	if err == nil {
		err = applyFSGroup(dir, r.st.FsGroup)
	}
	if err != nil {
		mp.removeCreated()
		return nil, fmt.Errorf("local directory %s: %w", r.key, err)
	}
	created, key := mp.created, r.key
	return func() error {
		if !created {
			return nil
		}
		// What containers wrote goes too, but never through a mount.
		parent, err := safefs.OpenInRoot(m.cfg.Root, filepath.Dir(key))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("remove %s: %w", key, err)
		}
		defer parent.Close()
		return safefs.RemoveTreeAt(parent, filepath.Base(key), key)
	}, nil
}

// setFSGid gives dir group gid, the setgid bit (files made inside inherit
// the group) and group rwx: Kubernetes' fsGroup for emptyDir volumes,
// which the runtime sends as the fsgid option.
func setFSGid(dir string, gid int) error {
	if err := os.Chown(dir, -1, gid); err != nil {
		return fmt.Errorf("fsgid: chown to group %d: %w", gid, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("fsgid: %w", err)
	}
	if err := os.Chmod(dir, fi.Mode()|os.ModeSetgid|0o070); err != nil {
		return fmt.Errorf("fsgid: chmod: %w", err)
	}
	return nil
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
	return m.mountFS(source, r, fstype, opts, func(root string) error {
		if r.fsGID >= 0 {
			if err := setFSGid(root, r.fsGID); err != nil {
				return err
			}
		}
		return applyFSGroup(root, r.st.FsGroup)
	})
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
		return opts, hostinput.Invalid("hugetlbfs pagesize %q: not a size", hostinput.Clip(psv))
	}
	out := opts.Without("pagesize")
	out.Data = append(out.Data, fmt.Sprintf("pagesize=%d", pagesize))
	sv, ok := opts.Value("size")
	if !ok {
		return out, nil
	}
	size, err := parseSize(sv)
	if err != nil {
		return opts, hostinput.Invalid("hugetlbfs size %q: not a size", hostinput.Clip(sv))
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

// mountBind bind-mounts source on key (made a directory or an empty file
// to match source), then applies flags such as ro with a remount, which a
// first bind mount ignores. A source inside Root is resolved inside it
// too, through a handle: it may lie in the host-writable share.
func (m *Manager) mountBind(source, key string, opts MountOptions) (func() error, error) {
	if _, err := relUnder(m.cfg.Root, source); err == nil {
		h, err := safefs.OpenInRoot(m.cfg.Root, source)
		if err != nil {
			return nil, fmt.Errorf("bind source: %w", err)
		}
		defer h.Close()
		source = safefs.ProcPath(h)
	}
	fi, err := os.Stat(source)
	if err != nil {
		return nil, fmt.Errorf("bind source: %w", err)
	}
	mp, err := m.openMountPoint(key, fi.IsDir())
	if err != nil {
		return nil, err
	}
	defer mp.Close()
	bindFlags := uintptr(unix.MS_BIND) | opts.Flags&unix.MS_REC
	rest := opts.Flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT)
	return m.mountOn(mp, func(target string) error {
		if err := m.cfg.Mounter.Mount(source, target, "", bindFlags, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", source, key, err)
		}
		return nil
	}, func(root string) error {
		if rest != 0 {
			if err := m.cfg.Mounter.Mount("", root, "", unix.MS_BIND|unix.MS_REMOUNT|rest, ""); err != nil {
				return fmt.Errorf("remount bind %s with flags %#x: %w", key, rest, err)
			}
		}
		return m.propagate(root, key, opts)
	})
}

// relUnder returns p relative to root when p lies strictly below it.
func relUnder(root, p string) (string, error) {
	root, p = filepath.Clean(root), filepath.Clean(p)
	rel, ok := strings.CutPrefix(p, root+"/")
	if !ok || !filepath.IsAbs(p) {
		return "", hostinput.Invalid("path %q is outside %s", hostinput.Clip(p), root)
	}
	return rel, nil
}

// mountOverlay mounts an overlay whose lowerdir, upperdir and workdir
// all lie under Root, as the mount point does. Each is resolved inside
// Root (upperdir and workdir created) and handed to the kernel as a
// /proc/self/fd path, so no symlink swapped in afterwards can point the
// overlay outside.
func (m *Manager) mountOverlay(r *request) (func() error, error) {
	var handles []*os.File
	defer func() {
		for _, h := range handles {
			h.Close()
		}
	}()
	opts := r.opts.Without("lowerdir", "upperdir", "workdir")
	lower, _ := r.opts.Value("lowerdir")
	var lowers []string
	for _, l := range strings.Split(lower, ":") {
		if !filepath.IsAbs(l) {
			return nil, hostinput.Invalid("overlay lowerdir %q is not absolute", hostinput.Clip(l))
		}
		if _, err := relUnder(m.cfg.Root, l); err != nil {
			return nil, fmt.Errorf("overlay lowerdir: %w", err)
		}
		h, err := safefs.OpenInRoot(m.cfg.Root, l)
		if err == nil {
			err = safefs.IsDir(h)
			handles = append(handles, h)
		}
		if err != nil {
			return nil, fmt.Errorf("overlay lowerdir %s: %w", hostinput.Clip(l), err)
		}
		lowers = append(lowers, safefs.ProcPath(h))
	}
	opts.Data = append(opts.Data, "lowerdir="+strings.Join(lowers, ":"))
	for _, key := range []string{"upperdir", "workdir"} {
		v, ok := r.opts.Value(key)
		if !ok {
			continue
		}
		if _, err := relUnder(m.cfg.Root, v); err != nil {
			return nil, fmt.Errorf("overlay %s: %w", key, err)
		}
		h, _, err := safefs.MkdirAllInRoot(m.cfg.Root, v, 0o755)
		if err != nil {
			return nil, fmt.Errorf("overlay %s: %w", key, err)
		}
		handles = append(handles, h)
		opts.Data = append(opts.Data, key+"="+safefs.ProcPath(h))
	}
	source := r.st.Source
	if source == "" {
		source = "overlay"
	}
	return m.mountFS(source, r, "overlay", opts, nil)
}

// applyFSGroup gives group gid ownership of everything under root, as
// Kubernetes' fsGroup asks (and upstream's set_ownership does): files get
// user and group read/write, directories also search and the setgid bit.
// With OnRootMismatch nothing is walked when root already has the group
// and those permissions. root may be a /proc/self/fd path: it is followed,
// everything below is not (symlinks are left alone).
func applyFSGroup(root string, fg *pb.FSGroup) error {
	if fg == nil {
		return nil
	}
	gid := int(fg.GetGroupId())
	const fileMask, dirMask = 0o660, 0o770 | os.ModeSetgid
	fi, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("fs_group: %w", err)
	}
	if fg.GetGroupChangePolicy() == typespb.FSGroupChangePolicy_OnRootMismatch {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) == gid && fi.Mode()&dirMask == dirMask {
			return nil
		}
	}
	fix := func(path string, mode os.FileMode, chown func() error) error {
		if err := chown(); err != nil {
			return fmt.Errorf("fs_group chown %s: %w", path, err)
		}
		want := mode | fileMask
		if mode.IsDir() {
			want = mode | dirMask
		}
		if want != mode {
			if err := os.Chmod(path, want); err != nil {
				return fmt.Errorf("fs_group chmod %s: %w", path, err)
			}
		}
		return nil
	}
	if err := fix(root, fi.Mode(), func() error { return os.Chown(root, -1, gid) }); err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("fs_group: %w", err)
	}
	for _, e := range entries {
		err := filepath.WalkDir(root+"/"+e.Name(), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("fs_group walk %s: %w", path, err)
			}
			if d.Type()&fs.ModeSymlink != 0 {
				return nil // never change the file a link points to
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return fix(path, info.Mode(), func() error { return os.Lchown(path, -1, gid) })
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// UpdateEphemeral applies new options (a resized sizeLimit) to mounted
// tmpfs ephemeral storages by remounting them.
func (m *Manager) UpdateEphemeral(storages []*pb.Storage) error {
	for i, st := range storages {
		if st == nil {
			return hostinput.Invalid("storage %d is empty", i)
		}
		if st.Driver != DriverEphemeral {
			return hostinput.Invalid("storage %d: driver %q is not ephemeral", i, hostinput.Clip(st.Driver))
		}
		if st.Fstype != "tmpfs" {
			return hostinput.Invalid("storage %d: only tmpfs ephemeral storages can be updated, not %q", i, hostinput.Clip(st.Fstype))
		}
		key, _, err := Confine(m.cfg.Root, st.MountPoint)
		if err != nil {
			return fmt.Errorf("storage %d: %w", i, err)
		}
		opts, err := ParseOptions(st.Options)
		if err != nil {
			return fmt.Errorf("storage %d: %w", i, err)
		}
		opts = opts.Without(fsGIDKey) // set at mount time; tmpfs refuses it
		if err := m.remount(key, st.Source, opts); err != nil {
			return fmt.Errorf("storage %d: %w", i, err)
		}
	}
	return nil
}

// remount applies opts to the tmpfs mounted at key, through a handle
// that must be the root of a mount.
func (m *Manager) remount(key, source string, opts MountOptions) error {
	h, err := safefs.OpenInRoot(m.cfg.Root, key)
	if err != nil {
		return fmt.Errorf("%s is not mounted: %v: %w", key, err, errdefs.ErrNotFound)
	}
	defer h.Close()
	if m.verifyMounts {
		if _, root, err := safefs.MountID(h); err != nil || !root {
			return fmt.Errorf("%s is not mounted: %w", key, errdefs.ErrNotFound)
		}
	} else if mounted, err := m.cfg.IsMounted(key); err != nil || !mounted {
		return fmt.Errorf("%s is not mounted: %w", key, errdefs.ErrNotFound)
	}
	if err := m.cfg.Mounter.Mount(source, safefs.ProcPath(h), "tmpfs", opts.Flags|unix.MS_REMOUNT, opts.DataString()); err != nil {
		return fmt.Errorf("remount %s with %q: %w", key, opts.DataString(), err)
	}
	return nil
}
