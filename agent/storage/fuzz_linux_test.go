package storage

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
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
