package storage

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

func FuzzParseOptions(f *testing.F) {
	f.Add("trans=virtio,version=9p2000.L,cache=mmap", "nodev")
	f.Add("ro,rbind", "mode=1777")
	f.Add("", "\x00")
	f.Fuzz(func(t *testing.T, a, b string) {
		mo, err := ParseOptions([]string{a, b})
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error class: %v", err)
			}
			return
		}
		if len(mo.DataString()) > maxDataLen {
			t.Fatalf("data of %d bytes accepted", len(mo.DataString()))
		}
		for _, d := range mo.Data {
			if d == "" || strings.ContainsAny(d, ",\x00") {
				t.Fatalf("bad data element %q", d)
			}
		}
	})
}

func FuzzCopyPath(f *testing.F) {
	const root = "/run/kata-containers/shared/containers"
	f.Add(root + "/c1/rootfs/etc/hosts")
	f.Add(root + "/../x")
	f.Add(root + "//c1/./x")
	f.Add(root)
	f.Fuzz(func(t *testing.T, p string) {
		parts, err := splitConfined(root, p)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error class: %v", err)
			}
			return
		}
		if len(parts) == 0 {
			t.Fatal("no components")
		}
		for _, c := range parts {
			if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "/\x00") {
				t.Fatalf("component %q from %q", c, p)
			}
		}
	})
}

// FuzzValidateStorage feeds whole Storage messages (driver, source,
// fstype, mount point, options) to the checks every storage passes before
// anything is mounted. Properties: every refusal is InvalidArgument;
// what is accepted has its mount point strictly under the root, resolved
// inside it, no fsgid left in the mount data of the drivers that apply it
// themselves, and every overlay layer under the root.
func FuzzValidateStorage(f *testing.F) {
	root := f.TempDir()
	f.Add("virtio-fs", "kataShared", "virtiofs", root+"/shared/containers/", "", "")
	f.Add("ephemeral", "shm", "tmpfs", root+"/sandbox/shm", "noexec,nosuid,nodev,mode=1777", "size=67108864,fsgid=5")
	f.Add("overlayfs", "none", "overlay", root+"/c/rootfs", "lowerdir="+root+"/a:"+root+"/../b", "upperdir="+root+"/u,workdir=/tmp/w")
	f.Add("blk", "0000:00:02.0/01", "ext4", root+"/../../etc", "ro", "fsgid=4294967295")
	f.Add("local", "", "", root+"/x/./y//", "fsgid=1000", "mode=0777")
	f.Add("bind", "relative", "", root, "rbind", "\x00")
	m := New(Config{Root: root, SysfsRoot: f.TempDir(), IsMounted: func(string) (bool, error) { return false, nil }})
	f.Fuzz(func(t *testing.T, driver, source, fstype, point, o1, o2 string) {
		st := &pb.Storage{Driver: driver, Source: source, Fstype: fstype, MountPoint: point, Options: []string{o1, o2}}
		r, err := m.validate(st)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("refusal is not InvalidArgument: %v", err)
			}
			return
		}
		if r.drv.name != driver {
			t.Fatalf("driver %q served by %q", driver, r.drv.name)
		}
		if r.key != filepath.Clean(point) || !strings.HasPrefix(r.key, root+"/") {
			t.Fatalf("mount point %q accepted as %q", point, r.key)
		}
		if r.target != root && !strings.HasPrefix(r.target, root+"/") {
			t.Fatalf("mount point %q resolves outside the root: %q", point, r.target)
		}
		if r.drv.fsGID {
			if _, ok := r.opts.Value(fsGIDKey); ok {
				t.Fatalf("fsgid left in the mount data: %v", r.opts.Data)
			}
			if r.fsGID < -1 || r.fsGID >= 1<<32-1 {
				t.Fatalf("fsgid %d", r.fsGID)
			}
		}
		if driver == DriverOverlayFS {
			lower, _ := r.opts.Value("lowerdir")
			for _, l := range strings.Split(lower, ":") {
				if c := filepath.Clean(l); !strings.HasPrefix(c, root+"/") {
					t.Fatalf("overlay layer %q outside the root", l)
				}
			}
		}
	})
}

// FuzzParseSize: a size parseSize accepts is exact (no overflow) and
// prints back to itself.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"2M", "1048576", "1g", "9223372036854775807", "8589934592G", "-1k", "k", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			return
		}
		if n > 1<<63 {
			t.Fatalf("%q = %d, beyond 2^63", s, n)
		}
		digits, mult := s, uint64(1)
		switch last := s[len(s)-1]; last {
		case 'k', 'K':
			digits, mult = s[:len(s)-1], 1<<10
		case 'm', 'M':
			digits, mult = s[:len(s)-1], 1<<20
		case 'g', 'G':
			digits, mult = s[:len(s)-1], 1<<30
		}
		d, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || d*mult != n || d != n/mult {
			t.Fatalf("%q = %d, want %s × %d", s, n, digits, mult)
		}
		if back, err := parseSize(strconv.FormatUint(n, 10)); err != nil || back != n {
			t.Fatalf("%d prints back as %d, %v", n, back, err)
		}
	})
}
