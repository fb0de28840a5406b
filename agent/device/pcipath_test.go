package device

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParsePCIPath(t *testing.T) {
	good := map[string]string{
		"02":           "02.0",
		"02/01":        "02.0/01.0",
		"1f.7":         "1f.7",
		"0a.5/0b.6/0c": "0a.5/0b.6/0c.0",
	}
	for in, want := range good {
		p, err := ParsePCIPath(in)
		if err != nil {
			t.Fatalf("ParsePCIPath(%q): %v", in, err)
		}
		if p.String() != want {
			t.Fatalf("ParsePCIPath(%q) = %s, want %s", in, p, want)
		}
	}
	for _, in := range []string{"", "20", "00.8", "//", "xyz", "02/", "/02", "002", "00.01", "00.x", "02/01/03/04/05/06/07/08/09/0a/0b/0c/0d/0e/0f/10/11"} {
		if _, err := ParsePCIPath(in); !errors.Is(err, ErrInvalid) {
			t.Fatalf("ParsePCIPath(%q) = %v, want ErrInvalid", in, err)
		}
	}
}

// fakePCITree builds root/devices/pci0000:00 with a bridge at 02.0 whose
// secondary bus is 01, a device 01.0 behind it, and a second-level bridge at
// 01:03.0 with secondary bus 05.
func fakePCITree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mk("devices/pci0000:00/0000:00:02.0/pci_bus/0000:01")
	mk("devices/pci0000:00/0000:00:02.0/0000:01:01.0")
	mk("devices/pci0000:00/0000:00:02.0/0000:01:03.0/pci_bus/0000:05")
	mk("devices/pci0000:00/0000:00:02.0/0000:01:03.0/0000:05:00.0")
	mk("devices/pci0000:00/0000:00:04.0")
	// A "bridge" with two buses is ambiguous.
	mk("devices/pci0000:00/0000:00:06.0/pci_bus/0000:02")
	mk("devices/pci0000:00/0000:00:06.0/pci_bus/0000:03")
	return root
}

func TestPCIDevPath(t *testing.T) {
	s := Sysfs{Root: fakePCITree(t)}
	cases := map[string]string{
		"04":       "/devices/pci0000:00/0000:00:04.0",
		"02/01":    "/devices/pci0000:00/0000:00:02.0/0000:01:01.0",
		"02/03/00": "/devices/pci0000:00/0000:00:02.0/0000:01:03.0/0000:05:00.0",
		// The last element need not exist yet: it is what we wait for.
		"02/1f": "/devices/pci0000:00/0000:00:02.0/0000:01:1f.0",
	}
	for in, want := range cases {
		p, err := ParsePCIPath(in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.PCIDevPath("", p)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got != want {
			t.Fatalf("%s: got %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"04/01" /* not a bridge */, "06/01" /* two buses */, "08/01" /* absent */} {
		p, _ := ParsePCIPath(bad)
		if got, err := s.PCIDevPath("", p); err == nil {
			t.Fatalf("%s: resolved to %s, want error", bad, got)
		}
	}
	if _, err := s.PCIDevPath("pci../x", PCIPath{{2, 0}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad root bus accepted: %v", err)
	}
}

func FuzzParsePCIPath(f *testing.F) {
	for _, s := range []string{"02", "02/01", "1f.7/00.0", "", "20", "0x/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePCIPath(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if len(p) == 0 || len(p) > maxPCIDepth {
			t.Fatalf("accepted path of %d elements", len(p))
		}
		for _, e := range p {
			if e.Slot > 31 || e.Fn > 7 {
				t.Fatalf("out of range element %+v", e)
			}
		}
		// The canonical form parses back to the same path.
		q, err := ParsePCIPath(p.String())
		if err != nil || q.String() != p.String() {
			t.Fatalf("round trip %q -> %q: %v", p, q, err)
		}
	})
}
