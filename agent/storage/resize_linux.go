package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/agent/safefs"
)

// Online grow ioctls (the guest has no resize2fs or xfs_growfs).
const (
	// EXT4_IOC_RESIZE_FS: _IOW('f', 16, __u64), the new block count.
	ext4IocResizeFS = 0x40086610
	// XFS_IOC_FSGEOMETRY_V1: _IOR('X', 100, struct xfs_fsop_geom_v1).
	xfsIocFSGeometryV1 = 0x80705864
	// XFS_IOC_FSGROWFSDATA: _IOW('X', 110, struct xfs_growfs_data).
	xfsIocFSGrowFSData = 0x4010586e

	xfsSuperMagic = 0x58465342
)

// xfsGeomV1 is struct xfs_fsop_geom_v1 (112 bytes).
type xfsGeomV1 struct {
	Blocksize, Rtextsize, Agblocks, Agcount, Logblocks, Sectsize, Inodesize, Imaxpct uint32
	Datablocks, Rtblocks, Rtextents, Logstart                                        uint64
	UUID                                                                             [16]byte
	Sunit, Swidth, Version, Flags, Logsectsize, Rtsectsize, Dirblocksize             uint32
	_                                                                                uint32
}

// xfsGrowFSData is struct xfs_growfs_data (16 bytes).
type xfsGrowFSData struct {
	Newblocks uint64
	Imaxpct   uint32
	_         uint32
}

// blockDrivers are the storages whose mount is a filesystem on a disk of
// the guest's own.
var blockDrivers = []string{DriverBlk, DriverMMIOBlk, DriverSCSI}

// ResizeVolume grows the filesystem of the block storage mounted at p to
// size bytes, online (the host grew the disk first, e.g. with QMP
// block_resize). ext4 and xfs can grow; shrinking is refused.
func (m *Manager) ResizeVolume(p string, size uint64) error {
	key, _, err := Confine(m.cfg.Root, p)
	if err != nil {
		return fmt.Errorf("resize volume: %w", err)
	}
	if size == 0 {
		return hostinput.Invalid("resize volume %s: size 0", key)
	}
	// Held through the resize so the volume cannot be released under it.
	m.mu.Lock()
	defer m.mu.Unlock()
	pt, ok := m.points[key]
	if !ok {
		return fmt.Errorf("resize volume: no storage is mounted at %s: %w", key, errdefs.ErrNotFound)
	}
	if !isBlockDriver(pt.driver) {
		return fmt.Errorf("resize volume %s: it is a %s storage, not a filesystem on a block device (%s): %w",
			key, pt.driver, strings.Join(blockDrivers, ", "), errdefs.ErrFailedPrecondition)
	}
	h, err := safefs.OpenInRoot(m.cfg.Root, key)
	if err != nil {
		return fmt.Errorf("resize volume %s: %w", key, err)
	}
	defer h.Close()
	if m.verifyMounts {
		if _, root, err := safefs.MountID(h); err != nil || !root {
			return fmt.Errorf("resize volume %s: not a mount's root any more (err %v): %w", key, err, errdefs.ErrFailedPrecondition)
		}
	}
	f, err := os.OpenFile(safefs.ProcPath(h), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("resize volume %s: %w", key, err)
	}
	defer f.Close()
	if err := growFS(f, key, size, m.cfg.SysfsRoot); err != nil {
		return fmt.Errorf("resize volume %s: %w", key, err)
	}
	m.log.Info("volume resized", "mount_point", key, "size", size)
	return nil
}

func isBlockDriver(d string) bool {
	for _, b := range blockDrivers {
		if b == d {
			return true
		}
	}
	return false
}

// growFS grows the filesystem f is the root of to size bytes.
func growFS(f *os.File, key string, size uint64, sysfsRoot string) error {
	fd := int(f.Fd())
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	fsType := uint32(sfs.Type)
	if fsType != unix.EXT4_SUPER_MAGIC && fsType != xfsSuperMagic {
		return fmt.Errorf("online resize of a %s filesystem is not supported (ext4 and xfs are): %w", fsName(fsType), errdefs.ErrNotImplemented)
	}
	devBytes, err := deviceBytes(sysfsRoot, st.Dev)
	if err != nil {
		return err
	}
	if size > devBytes {
		return fmt.Errorf("the disk holds %d bytes, fewer than the %d asked for (grow the disk first): %w", devBytes, size, errdefs.ErrFailedPrecondition)
	}
	if fsType == xfsSuperMagic {
		return growXFS(fd, size)
	}
	return growExt4(fd, size, &sfs)
}

func growExt4(fd int, size uint64, sfs *unix.Statfs_t) error {
	bsize := uint64(sfs.Bsize)
	blocks := size / bsize
	// f_blocks leaves out ext4's metadata overhead, so it is a lower
	// bound of the block count: below it is surely a shrink.
	if blocks < sfs.Blocks {
		return fmt.Errorf("ext4: %d bytes is smaller than the filesystem (at least %d bytes); shrinking is not supported: %w",
			size, sfs.Blocks*bsize, errdefs.ErrInvalidArgument)
	}
	if err := ioctlPtr(fd, ext4IocResizeFS, unsafe.Pointer(&blocks)); err != nil {
		return ioctlError("ext4: resize to "+strconv.FormatUint(blocks, 10)+" blocks", err)
	}
	return nil
}

func growXFS(fd int, size uint64) error {
	var g xfsGeomV1
	if err := ioctlPtr(fd, xfsIocFSGeometryV1, unsafe.Pointer(&g)); err != nil {
		return ioctlError("xfs: geometry", err)
	}
	if g.Blocksize == 0 {
		return fmt.Errorf("xfs: geometry reports block size 0")
	}
	blocks := size / uint64(g.Blocksize)
	switch {
	case blocks < g.Datablocks:
		return fmt.Errorf("xfs: %d bytes is smaller than the filesystem (%d bytes); xfs cannot shrink: %w",
			size, g.Datablocks*uint64(g.Blocksize), errdefs.ErrInvalidArgument)
	case blocks == g.Datablocks:
		return nil
	}
	in := xfsGrowFSData{Newblocks: blocks, Imaxpct: g.Imaxpct}
	if err := ioctlPtr(fd, xfsIocFSGrowFSData, unsafe.Pointer(&in)); err != nil {
		return ioctlError("xfs: grow to "+strconv.FormatUint(blocks, 10)+" blocks", err)
	}
	return nil
}

func ioctlPtr(fd int, req uint, p unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(p)); e != 0 {
		return e
	}
	return nil
}

// ioctlError classifies what the filesystem said about a resize.
func ioctlError(what string, err error) error {
	switch {
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%s: refused (a shrink, or a size the filesystem cannot take): %w (%w)", what, err, errdefs.ErrFailedPrecondition)
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOTTY):
		return fmt.Errorf("%s: this filesystem cannot grow online: %w (%w)", what, err, errdefs.ErrNotImplemented)
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("%s: mounted read-only: %w (%w)", what, err, errdefs.ErrFailedPrecondition)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%s: %w (%w)", what, err, errdefs.ErrPermissionDenied)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%s: a resize is already running: %w (%w)", what, err, errdefs.ErrConflict)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// deviceBytes is the size of block device dev, from sysfs (in 512-byte
// sectors whatever the device's block size).
func deviceBytes(sysfsRoot string, dev uint64) (uint64, error) {
	p := filepath.Join(sysfsRoot, "dev/block", fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev)), "size")
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("size of the disk: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n > 1<<54 {
		return 0, fmt.Errorf("size of the disk: %s holds %q", p, hostinput.Clip(string(b)))
	}
	return n * 512, nil
}

// fsName names the filesystems a block storage is likely to hold.
func fsName(magic uint32) string {
	switch magic {
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.MSDOS_SUPER_MAGIC:
		return "vfat"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.F2FS_SUPER_MAGIC:
		return "f2fs"
	case unix.SQUASHFS_MAGIC:
		return "squashfs"
	case unix.ISOFS_SUPER_MAGIC:
		return "iso9660"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlay"
	}
	return fmt.Sprintf("type %#x", magic)
}
