package initrd

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

func TestCheckIPTablesKernel(t *testing.T) {
	all := func(string) string { return "y" }
	if err := CheckIPTablesKernel(all); err != nil {
		t.Fatal(err)
	}
	noOwner := func(opt string) string {
		if opt == "CONFIG_NETFILTER_XT_MATCH_OWNER" {
			return "n"
		}
		return "y"
	}
	err := CheckIPTablesKernel(noOwner)
	if err == nil || !strings.Contains(err.Error(), "libxt_owner.so needs CONFIG_NETFILTER_XT_MATCH_OWNER=y") {
		t.Fatalf("err = %v, want the owner match named", err)
	}
}

func needIPTables(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(XtablesMulti); err != nil {
		t.Skipf("Debian's iptables is not installed: %v", err)
	}
}

func TestIPTablesFilesResolveLibraries(t *testing.T) {
	needIPTables(t)
	files, links, err := iptablesFiles("/")
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, f := range files {
		_, dst, _ := strings.Cut(f, ":")
		dsts = append(dsts, dst)
	}
	for _, want := range []string{"usr/sbin/xtables-legacy-multi", "lib/x86_64-linux-gnu/libc.so.6",
		"lib/x86_64-linux-gnu/libxtables.so.12", "lib/x86_64-linux-gnu/libip4tc.so.2",
		"lib/x86_64-linux-gnu/libip6tc.so.2", "usr/lib/x86_64-linux-gnu/xtables/libxt_REDIRECT.so"} {
		// Debian links some extensions to one file (the NAT targets):
		// those come in as symlinks.
		if !slices.Contains(dsts, want) && links[want] == "" {
			t.Errorf("image lacks %s: %v", want, dsts)
		}
	}
	// The interpreter is there once, under both names.
	if links["lib64/ld-linux-x86-64.so.2"] == "" && !slices.Contains(dsts, "lib64/ld-linux-x86-64.so.2") {
		t.Errorf("no ELF interpreter: files %v, links %v", dsts, links)
	}
	for _, tool := range []string{"iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"} {
		if links["usr/sbin/"+tool] != XtablesMulti {
			t.Errorf("%s links to %q", tool, links["usr/sbin/"+tool])
		}
	}
}

// layOut writes the iptables files of the image below root, as the
// initramfs holds them.
func layOut(t *testing.T, root string) {
	t.Helper()
	files, links, err := iptablesFiles("/")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		src, dst, _ := strings.Cut(f, ":")
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range links {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"proc", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// The image's iptables (exactly its files: binary, extensions, libraries)
// restores and saves the rule set of the end-to-end test unchanged, run in
// a chroot of those files in a new network namespace on this host. This
// proves the dependency walk and the extension list without booting.
func TestIPTablesOfImageRoundTrip(t *testing.T) {
	needIPTables(t)
	if os.Getuid() != 0 {
		t.Skip("needs root (chroot, network namespace)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare")
	}
	root := t.TempDir()
	layOut(t, root)
	for _, tc := range []struct{ name, rules, restore, save string }{
		{"IPv4", fixture.IPv4Rules, "iptables-restore", "iptables-save"},
		{"IPv6", fixture.IPv6Rules, "ip6tables-restore", "ip6tables-save"},
	} {
		script := `mount -t proc proc "$1/proc" && chroot "$1" /usr/sbin/` + tc.restore + ` && chroot "$1" /usr/sbin/` + tc.save
		cmd := exec.Command("unshare", "--net", "--mount", "--", "sh", "-c", script, "sh", root)
		cmd.Stdin = strings.NewReader(tc.rules)
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("%s: %v: %s", tc.name, err, stderr)
		}
		want, got := fixture.SaveTables(tc.rules), fixture.SaveTables(string(out))
		for name, w := range want {
			if got[name] != w {
				t.Errorf("%s table %s after the round trip:\n%s\nwant:\n%s", tc.name, name, got[name], w)
			}
		}
	}
}
