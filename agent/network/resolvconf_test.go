package network

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidateResolvConfLine(t *testing.T) {
	for _, ok := range []string{
		"nameserver 10.96.0.10",
		"nameserver fd00::10",
		"nameserver fe80::1%eth0",
		"search default.svc.cluster.local svc.cluster.local cluster.local",
		"domain example.com.",
		"options ndots:5 timeout:2 attempts:3 edns0 single-request-reopen",
		"sortlist 130.155.160.0/255.255.240.0 130.155.0.0",
		"# a comment",
		"; another",
		"",
		"   ",
		"\tnameserver 1.1.1.1",
	} {
		if err := ValidateResolvConfLine(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"nameserver 10.96.0.10\nnameserver 6.6.6.6",
		"nameserver 10.96.0.10\r",
		"search a\x00b",
		"nameserver",
		"nameserver 1.1.1.1 2.2.2.2",
		"nameserver example.com",
		"search",
		"search bad_dom@in",
		"search " + strings.Repeat("a", 64) + ".com",
		"domain a.com b.com",
		"options",
		"options ndots:5;rm",
		"sortlist 1.2.3.4/x",
		"hostname evil",
		strings.Repeat("#", maxResolvLineLen+1),
	} {
		if err := ValidateResolvConfLine(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: error %v, want InvalidArgument", bad, err)
		}
	}
}

func TestWriteResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox", "resolv.conf")
	lines := []string{"nameserver 10.96.0.10", " search svc.cluster.local ", "options ndots:5"}
	if err := WriteResolvConf(path, lines); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "nameserver 10.96.0.10\nsearch svc.cluster.local\noptions ndots:5\n"; string(got) != want {
		t.Errorf("content %q, want %q", got, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}

	// A bad line leaves the file as it was.
	err = WriteResolvConf(path, []string{"nameserver 1.1.1.1", "nameserver 1.1.1.1\nnameserver 6.6.6.6"})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "dns line 1") {
		t.Errorf("error = %v", err)
	}
	again, _ := os.ReadFile(path)
	if string(again) != string(got) {
		t.Errorf("file changed by a refused write: %q", again)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}

	if err := WriteResolvConf(path, make([]string, maxResolvLines+1)); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("too many lines: %v", err)
	}
	// No lines: an empty file (the runtime sends none when the pod has no DNS config).
	if err := WriteResolvConf(path, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Errorf("content %q", b)
	}
}
