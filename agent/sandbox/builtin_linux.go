package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// LocalStorage is a minimal StorageManager used until the storage package
// is wired in: "local" storages are directories, "bind" bind mounts,
// "ephemeral" tmpfs mounts; anything else is not implemented. Mount points
// are reference-counted.
type LocalStorage struct {
	mu     sync.Mutex
	refs   map[string]int      // mount point -> references
	owners map[string][]string // owner -> mount points
	mounts map[string]bool     // mount point -> we mounted something
}

// NewLocalStorage returns an empty LocalStorage.
func NewLocalStorage() *LocalStorage {
	return &LocalStorage{refs: map[string]int{}, owners: map[string][]string{}, mounts: map[string]bool{}}
}

// Mount implements StorageManager.
func (l *LocalStorage) Mount(_ context.Context, owner string, storages []*pb.Storage) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range storages {
		if s == nil {
			continue
		}
		mp := s.MountPoint
		if !filepath.IsAbs(mp) || filepath.Clean(mp) != mp {
			return fmt.Errorf("storage mount point %q must be absolute and clean: %w", mp, errdefs.ErrInvalidArgument)
		}
		if l.refs[mp] > 0 {
			l.refs[mp]++
			l.owners[owner] = append(l.owners[owner], mp)
			continue
		}
		mounted := false
		switch s.Driver {
		case "local":
			mode := os.FileMode(0o777)
			for _, o := range s.Options {
				if v, ok := strings.CutPrefix(o, "mode="); ok {
					m, err := strconv.ParseUint(v, 8, 32)
					if err != nil {
						return fmt.Errorf("storage %q: bad mode %q: %w", mp, v, errdefs.ErrInvalidArgument)
					}
					mode = os.FileMode(m)
				}
			}
			if err := os.MkdirAll(mp, mode); err != nil {
				return fmt.Errorf("storage %q: %w", mp, err)
			}
			_ = os.Chmod(mp, mode)
		case "bind", "watchable-bind":
			if err := os.MkdirAll(mp, 0o755); err != nil {
				return fmt.Errorf("storage %q: %w", mp, err)
			}
			if err := unix.Mount(s.Source, mp, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("bind %s on %s: %w", s.Source, mp, err)
			}
			mounted = true
		case "ephemeral":
			if s.Fstype != "tmpfs" {
				return fmt.Errorf("storage %q: ephemeral fstype %q: %w", mp, s.Fstype, errdefs.ErrNotImplemented)
			}
			if err := os.MkdirAll(mp, 0o755); err != nil {
				return fmt.Errorf("storage %q: %w", mp, err)
			}
			if err := unix.Mount(s.Source, mp, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
				return fmt.Errorf("mount tmpfs on %s: %w", mp, err)
			}
			mounted = true
		default:
			return fmt.Errorf("storage driver %q for %q: %w", s.Driver, mp, errdefs.ErrNotImplemented)
		}
		l.refs[mp] = 1
		l.mounts[mp] = mounted
		l.owners[owner] = append(l.owners[owner], mp)
	}
	return nil
}

// Release implements StorageManager.
func (l *LocalStorage) Release(_ context.Context, owner string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, mp := range l.owners[owner] {
		l.refs[mp]--
		if l.refs[mp] > 0 {
			continue
		}
		delete(l.refs, mp)
		if l.mounts[mp] {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			}
		}
		delete(l.mounts, mp)
	}
	delete(l.owners, owner)
	return errors.Join(errs...)
}

// NodeDevices is a minimal DeviceResolver used until the storage package
// is wired in: each device's vm_path must already exist in the guest.
type NodeDevices struct{}

// Apply implements DeviceResolver.
func (NodeDevices) Apply(_ context.Context, devices []*pb.Device, spec *specs.Spec) error {
	for _, d := range devices {
		if d == nil {
			continue
		}
		if d.ContainerPath == "" || !filepath.IsAbs(d.ContainerPath) {
			return fmt.Errorf("device %q: container path %q must be absolute: %w", d.Id, d.ContainerPath, errdefs.ErrInvalidArgument)
		}
		if d.VmPath == "" {
			return fmt.Errorf("device %q: no guest path; only devices with vm_path are supported: %w", d.Id, errdefs.ErrNotImplemented)
		}
		var st unix.Stat_t
		if err := unix.Stat(d.VmPath, &st); err != nil {
			return fmt.Errorf("device %q at %s: %w: %w", d.Id, d.VmPath, err, errdefs.ErrNotFound)
		}
		var typ string
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFBLK:
			typ = "b"
		case unix.S_IFCHR:
			typ = "c"
		default:
			return fmt.Errorf("device %q: %s is not a device node: %w", d.Id, d.VmPath, errdefs.ErrInvalidArgument)
		}
		major, minor := int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
		if spec.Linux == nil {
			spec.Linux = &specs.Linux{}
		}
		found := false
		for i := range spec.Linux.Devices {
			if spec.Linux.Devices[i].Path == d.ContainerPath {
				spec.Linux.Devices[i].Major, spec.Linux.Devices[i].Minor = major, minor
				spec.Linux.Devices[i].Type = typ
				found = true
			}
		}
		if !found {
			mode := os.FileMode(st.Mode & 0o777)
			spec.Linux.Devices = append(spec.Linux.Devices, specs.LinuxDevice{Path: d.ContainerPath, Type: typ, Major: major, Minor: minor, FileMode: &mode})
		}
		if spec.Linux.Resources == nil {
			spec.Linux.Resources = &specs.LinuxResources{}
		}
		spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: true, Type: typ, Major: &major, Minor: &minor, Access: "rwm",
		})
	}
	return nil
}
