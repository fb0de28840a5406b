package sandbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// RemoveStaleVirtiofsShareMounts unmounts virtio-fs mounts under the
// share directory that no container uses any more.
func (s *Sandbox) RemoveStaleVirtiofsShareMounts() error {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("virtiofs"))
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	s.mu.Lock()
	live := map[string]bool{}
	for id := range s.containers {
		live[id] = true
	}
	s.mu.Unlock()
	var errs []error
	for _, mp := range staleShareMounts(mounts, s.cfg.SharedDir, live) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// staleShareMounts picks the virtio-fs mounts below sharedDir/<cid>/ whose
// container is gone; the share itself and live containers' mounts stay.
// Deepest first, so nested mounts come off before their parents.
func staleShareMounts(mounts []*mountinfo.Info, sharedDir string, live map[string]bool) []string {
	prefix := filepath.Clean(sharedDir) + "/"
	var out []string
	for _, m := range mounts {
		if m.FSType != "virtiofs" || !strings.HasPrefix(m.Mountpoint, prefix) {
			continue
		}
		cid, _, _ := strings.Cut(strings.TrimPrefix(m.Mountpoint, prefix), "/")
		if cid == "" || live[cid] {
			continue
		}
		out = append(out, m.Mountpoint)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}
