package metrics

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

type statfsFunc func(path string, st *unix.Statfs_t) error

// realFSTypes are the filesystems upstream reports usage for: disk-backed
// ones (and overlay), not the pseudo and memory filesystems.
var realFSTypes = []string{"ext4", "xfs", "btrfs", "vfat", "overlay"}

// filesystems writes kata_guest_filesystem_bytes and
// kata_guest_filesystem_inodes for each writable disk-backed filesystem,
// once per device, as upstream does. "available" is the free count
// (f_bfree, f_ffree), as upstream reports it.
func (c *Collector) filesystems(w *writer) error {
	path := filepath.Join(c.proc, "self/mountinfo")
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	mounts, err := mountinfo.GetMountsFromReader(f, func(m *mountinfo.Info) (skip, stop bool) {
		return !slices.Contains(realFSTypes, m.FSType) || slices.Contains(strings.Split(m.VFSOptions, ","), "ro"), false
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	statfs := c.statfs
	if statfs == nil {
		statfs = unix.Statfs
	}
	type usage struct {
		mount, device string
		bytes, inodes [3]uint64 // total, used, available
	}
	var out []usage
	seen := map[[2]int]bool{}
	for _, m := range mounts {
		dev := [2]int{m.Major, m.Minor}
		if seen[dev] {
			continue // another bind mount of the same filesystem
		}
		seen[dev] = true
		var st unix.Statfs_t
		if err := statfs(m.Mountpoint, &st); err != nil {
			continue // unmounted meanwhile, or not reachable: skip, as upstream
		}
		name := m.Source
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
		if name == "" {
			name = strconv.Itoa(m.Major) + ":" + strconv.Itoa(m.Minor)
		}
		bs := uint64(st.Bsize)
		total, free := st.Blocks*bs, st.Bfree*bs
		out = append(out, usage{mount: m.Mountpoint, device: name,
			bytes:  [3]uint64{total, total - min(free, total), free},
			inodes: [3]uint64{st.Files, st.Files - min(st.Ffree, st.Files), st.Ffree}})
	}
	items := []string{"total", "used", "available"}
	for _, fam := range []struct {
		name, help string
		get        func(usage) [3]uint64
	}{
		{"kata_guest_filesystem_bytes", "Guest filesystem space usage in bytes.", func(u usage) [3]uint64 { return u.bytes }},
		{"kata_guest_filesystem_inodes", "Guest filesystem inode usage.", func(u usage) [3]uint64 { return u.inodes }},
	} {
		if len(out) == 0 {
			break
		}
		w.family(fam.name, "gauge", fam.help)
		for _, u := range out {
			for i, v := range fam.get(u) {
				w.sample(fam.name, formatUint(v), "mount", u.mount, "device", u.device, "item", items[i])
			}
		}
	}
	return nil
}
