package storage

import (
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestParseOptions9p(t *testing.T) {
	// Exactly what the runtime sends for a 9p share.
	mo, err := ParseOptions([]string{"trans=virtio,version=9p2000.L,cache=mmap", "nodev", "msize=8192"})
	if err != nil {
		t.Fatal(err)
	}
	if mo.Flags != unix.MS_NODEV {
		t.Fatalf("flags = %#x, want MS_NODEV", mo.Flags)
	}
	if got := mo.DataString(); got != "trans=virtio,version=9p2000.L,cache=mmap,msize=8192" {
		t.Fatalf("data = %q", got)
	}
}

func TestParseOptionsShm(t *testing.T) {
	mo, err := ParseOptions([]string{"noexec", "nosuid", "nodev", "mode=1777", "size=67108864"})
	if err != nil {
		t.Fatal(err)
	}
	if mo.Flags != unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV {
		t.Fatalf("flags = %#x", mo.Flags)
	}
	if !reflect.DeepEqual(mo.Data, []string{"mode=1777", "size=67108864"}) {
		t.Fatalf("data = %v", mo.Data)
	}
	if v, ok := mo.Value("size"); !ok || v != "67108864" {
		t.Fatalf("size = %q %v", v, ok)
	}
	if _, ok := mo.Value("pagesize"); ok {
		t.Fatal("absent option found")
	}
	if got := mo.Without("mode").DataString(); got != "size=67108864" {
		t.Fatalf("Without = %q", got)
	}
}

func TestParseOptionsFlagsAndOverrides(t *testing.T) {
	mo, err := ParseOptions([]string{"ro", "rw", "rbind", "rprivate", "", " noatime ", "dax", "defaults"})
	if err != nil {
		t.Fatal(err)
	}
	if mo.ReadOnly() {
		t.Fatal("rw after ro must clear MS_RDONLY")
	}
	if mo.Flags != unix.MS_BIND|unix.MS_REC|unix.MS_NOATIME {
		t.Fatalf("flags = %#x", mo.Flags)
	}
	if mo.Propagation != unix.MS_PRIVATE|unix.MS_REC {
		t.Fatalf("propagation = %#x", mo.Propagation)
	}
	if mo.DataString() != "dax" {
		t.Fatalf("data = %q", mo.DataString())
	}
}

func TestParseOptionsRejects(t *testing.T) {
	if _, err := ParseOptions([]string{"size=1\x00,ro"}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("NUL accepted: %v", err)
	}
	if _, err := ParseOptions([]string{strings.Repeat("x", 5000)}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("oversized data accepted: %v", err)
	}
}
