package swap

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

// The offsets below are those of union swap_header in the kernel's
// include/linux/swap.h, written out independently of header.go:
//
//	char bootbits[1024];
//	__u32 version; __u32 last_page; __u32 nr_badpages;
//	unsigned char sws_uuid[16]; unsigned char sws_volume[16];
//	__u32 padding[117]; __u32 badpages[1];
//	... magic.magic[10] in the last 10 bytes of the page.
func TestHeaderMatchesKernelLayout(t *testing.T) {
	uuid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	for _, ps := range []int{4096, 16384, 65536} {
		size := int64(ps*100 + 123) // a partial last page is not used
		h, err := Header(ps, size, uuid)
		if err != nil {
			t.Fatalf("page size %d: %v", ps, err)
		}
		if len(h) != ps {
			t.Fatalf("page size %d: header is %d bytes", ps, len(h))
		}
		u32 := func(off int) uint32 { return binary.NativeEndian.Uint32(h[off:]) }
		if !bytes.Equal(h[:1024], make([]byte, 1024)) {
			t.Errorf("page size %d: boot bits not zero", ps)
		}
		if u32(1024) != 1 {
			t.Errorf("page size %d: version %d, want 1", ps, u32(1024))
		}
		if u32(1028) != 99 {
			t.Errorf("page size %d: last_page %d, want 99", ps, u32(1028))
		}
		if u32(1032) != 0 {
			t.Errorf("page size %d: nr_badpages %d", ps, u32(1032))
		}
		if !bytes.Equal(h[1036:1052], uuid[:]) {
			t.Errorf("page size %d: uuid %x", ps, h[1036:1052])
		}
		if !bytes.Equal(h[1052:1068], make([]byte, 16)) {
			t.Errorf("page size %d: volume name not empty", ps)
		}
		if string(h[ps-10:]) != "SWAPSPACE2" {
			t.Errorf("page size %d: magic %q", ps, h[ps-10:])
		}
		if !bytes.Equal(h[1068:ps-10], make([]byte, ps-10-1068)) {
			t.Errorf("page size %d: bytes between the info and the magic are not zero", ps)
		}
		if !HasSignature(h, ps) || HasSignature(h, ps*2) || (ps > 4096 && HasSignature(h, 4096)) {
			t.Errorf("page size %d: HasSignature wrong", ps)
		}
	}
}

func TestHeaderRejects(t *testing.T) {
	var uuid [16]byte
	if _, err := Header(4096, 9*4096+4095, uuid); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("9 pages: %v, want FailedPrecondition", err)
	}
	if _, err := Header(4096, 10*4096, uuid); err != nil {
		t.Errorf("10 pages: %v", err)
	}
	for _, ps := range []int{0, 1000, 4095, 6144, 1 << 17} {
		if _, err := Header(ps, 1<<30, uuid); !errdefs.IsInvalidArgument(err) {
			t.Errorf("page size %d: %v, want InvalidArgument", ps, err)
		}
	}
	// last_page is a 32-bit field: a huge area is capped, not wrapped.
	h, err := Header(4096, 1<<62, uuid)
	if err != nil || binary.NativeEndian.Uint32(h[1028:]) != 1<<32-1 {
		t.Errorf("huge area: last_page %d err %v", binary.NativeEndian.Uint32(h[1028:]), err)
	}
}

// TestHeaderAgreesWithMkswap compares our header with util-linux's, where
// the host has it: same fields, save the UUID.
func TestHeaderAgreesWithMkswap(t *testing.T) {
	mkswap, err := exec.LookPath("mkswap")
	if err != nil {
		t.Skip("no mkswap on this host")
	}
	ps := os.Getpagesize()
	size := int64(ps * 64)
	f := filepath.Join(t.TempDir(), "area")
	if err := os.WriteFile(f, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkswap, f).CombinedOutput(); err != nil {
		t.Fatalf("mkswap: %v: %s", err, out)
	}
	theirs, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var uuid [16]byte
	copy(uuid[:], theirs[1036:1052])
	ours, err := Header(ps, size, uuid)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, theirs[:ps]) {
		for i := range ours {
			if ours[i] != theirs[i] {
				t.Fatalf("first difference at byte %d: ours %#x, mkswap's %#x", i, ours[i], theirs[i])
			}
		}
	}
}
