package storage

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
)

// Usage is one measure of a volume's capacity.
type Usage struct {
	Total, Available, Used uint64
}

// VolumeUsage is what GetVolumeStats reports of a volume.
type VolumeUsage struct {
	Bytes, Inodes Usage
}

// VolumeStats measures the filesystem that holds the guest path p (the
// kubelet asks for the volumes it gave a pod).
func (m *Manager) VolumeStats(p string) (VolumeUsage, error) {
	if p == "" || !filepath.IsAbs(p) {
		return VolumeUsage{}, fmt.Errorf("volume guest path %q is not absolute: %w", hostinput.Clip(p), errdefs.ErrInvalidArgument)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return VolumeUsage{}, hostinput.Invalid("volume guest path %q contains a NUL byte", hostinput.Clip(p))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return VolumeUsage{}, fmt.Errorf("volume %s: %w", hostinput.Clip(p), errdefs.ErrNotFound)
		}
		return VolumeUsage{}, fmt.Errorf("statfs %s: %w", hostinput.Clip(p), err)
	}
	bsize := uint64(st.Bsize)
	return VolumeUsage{
		Bytes:  Usage{Total: st.Blocks * bsize, Available: st.Bavail * bsize, Used: (st.Blocks - st.Bfree) * bsize},
		Inodes: Usage{Total: st.Files, Available: st.Ffree, Used: st.Files - st.Ffree},
	}, nil
}
