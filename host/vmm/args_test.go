package vmm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testPaths() paths {
	return paths{qmp: "/w/qmp.sock", vhostVsock: "/w/vhost-vsock.sock", hybridVsock: "/w/vsock.sock",
		virtiofs: "/w/virtiofs.sock", console: "/w/console.log"}
}

// pairs returns the values following each occurrence of flag.
func pairs(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

func TestQEMUArgsDefaults(t *testing.T) {
	c := defaultConfig()
	for _, o := range []Option{WithKernel("/img/vmlinuz"), WithInitrd("/img/initrd.img"), WithCmdline("console=ttyS0 fips=1")} {
		if err := o(&c); err != nil {
			t.Fatal(err)
		}
	}
	args, err := qemuArgs(&c, testPaths(), true, true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"-machine": {"q35"},
		"-accel":   {"tcg"},
		"-m":       {"512M,slots=4,maxmem=2048M"},
		"-object":  {"memory-backend-memfd,id=mem,size=512M,share=on"},
		"-numa":    {"node,memdev=mem"},
		"-smp":     {"1,maxcpus=4"},
		"-kernel":  {"/img/vmlinuz"},
		"-initrd":  {"/img/initrd.img"},
		"-append":  {"console=ttyS0 fips=1"},
		"-chardev": {"socket,id=vsock0,path=/w/vhost-vsock.sock", "socket,id=vfs,path=/w/virtiofs.sock"},
		"-device":  {"vhost-user-vsock-pci,chardev=vsock0", "vhost-user-fs-pci,chardev=vfs,tag=kataShared"},
		"-qmp":     {"unix:/w/qmp.sock,server=on,wait=off"},
		"-serial":  {"file:/w/console.log"},
		"-cpu":     nil,
	}
	for flag, vals := range want {
		if got := pairs(args, flag); strings.Join(got, "|") != strings.Join(vals, "|") {
			t.Errorf("%s = %q, want %q", flag, got, vals)
		}
	}
	for _, f := range []string{"-nodefaults", "-no-reboot"} {
		if !contains(args, f) {
			t.Errorf("missing %s in %q", f, args)
		}
	}
}

func contains(args []string, s string) bool {
	for _, a := range args {
		if a == s {
			return true
		}
	}
	return false
}

func TestQEMUArgsOptions(t *testing.T) {
	c := defaultConfig()
	for _, o := range []Option{WithKernel("/k"), WithKVM(true), WithMemory(1024), WithMaxMemory(0, 0),
		WithCPUs(2, 8), WithSharedDir("/s", "myTag"), WithExtraArgs("-s")} {
		if err := o(&c); err != nil {
			t.Fatal(err)
		}
	}
	args, err := qemuArgs(&c, testPaths(), false, true)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{"-accel": "kvm", "-cpu": "host", "-m": "1024M", "-smp": "2,maxcpus=8",
		"-device": "vhost-user-fs-pci,chardev=vfs,tag=myTag",
		"-object": "memory-backend-memfd,id=mem,size=1024M,share=on"}
	for flag, v := range checks {
		if got := pairs(args, flag); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want [%s]", flag, got, v)
		}
	}
	if contains(args, "-initrd") || contains(args, "-append") {
		t.Errorf("initrd/append present without being set: %q", args)
	}
	if args[len(args)-1] != "-s" {
		t.Errorf("extra args not last: %q", args)
	}
}

func TestQEMUArgsRejects(t *testing.T) {
	for name, mod := range map[string]func(*config){
		"no kernel":        func(c *config) { c.kernel = "" },
		"comma in kernel":  func(c *config) { c.kernel = "/a,b" },
		"maxmem too small": func(c *config) { c.maxMemMiB = 512 },
		"tag with comma":   func(c *config) { c.tag = "a,b" },
	} {
		c := defaultConfig()
		c.kernel = "/k"
		mod(&c)
		if _, err := qemuArgs(&c, testPaths(), true, true); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, o := range map[string]Option{
		"cpus above max": WithCPUs(3, 2), "zero cpus": WithCPUs(0, 2), "zero memory": WithMemory(0),
		"cid 2": WithGuestCID(2), "slots": WithMaxMemory(4096, -1),
	} {
		c := defaultConfig()
		if err := o(&c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestVirtiofsdArgs(t *testing.T) {
	c := defaultConfig()
	c.sharedDir = "/share"
	got := strings.Join(virtiofsdArgs(&c, testPaths()), " ")
	// xattrs are on by default: images need user.* attributes and file
	// capabilities on their rootfs.
	if want := "--socket-path=/w/virtiofs.sock -o source=/share -o cache=auto -o xattr"; got != want {
		t.Errorf("virtiofsd args = %q, want %q", got, want)
	}
	if err := WithVirtiofsdArgs("-o", "sandbox=chroot")(&c); err != nil {
		t.Fatal(err)
	}
	got = strings.Join(virtiofsdArgs(&c, testPaths()), " ")
	if want := "--socket-path=/w/virtiofs.sock -o source=/share -o cache=auto -o xattr -o sandbox=chroot"; got != want {
		t.Errorf("virtiofsd args = %q, want %q", got, want)
	}
	if err := WithXattr(false)(&c); err != nil {
		t.Fatal(err)
	}
	got = strings.Join(virtiofsdArgs(&c, testPaths()), " ")
	if want := "--socket-path=/w/virtiofs.sock -o source=/share -o cache=auto -o no_xattr -o sandbox=chroot"; got != want {
		t.Errorf("virtiofsd args without xattrs = %q, want %q", got, want)
	}
}

func TestWithImageDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte("console=ttyS0 quiet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := defaultConfig()
	if err := WithImageDir(dir)(&c); err != nil {
		t.Fatal(err)
	}
	if err := WithAppend("agent.log=debug")(&c); err != nil {
		t.Fatal(err)
	}
	if c.kernel != filepath.Join(dir, "vmlinuz") || c.initrd != filepath.Join(dir, "initrd.img") || c.cmdline != "console=ttyS0 quiet agent.log=debug" {
		t.Errorf("config = %q %q %q", c.kernel, c.initrd, c.cmdline)
	}
}

func TestUnixListening(t *testing.T) {
	table := filepath.Join(t.TempDir(), "unix")
	content := "Num       RefCount Protocol Flags    Type St Inode Path\n" +
		"0000000000000000: 00000002 00000000 00010000 0001 01 1234 /w/listening.sock\n" +
		"0000000000000000: 00000002 00000000 00000000 0001 01 1235 /w/bound.sock\n" +
		"0000000000000000: 00000003 00000000 00000000 0001 03 1236\n"
	if err := os.WriteFile(table, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{"/w/listening.sock": true, "/w/bound.sock": false, "/w/none.sock": false} {
		got, ok := unixListening(table, path)
		if !ok || got != want {
			t.Errorf("unixListening(%s) = %v, %v; want %v, true", path, got, ok, want)
		}
	}
	if _, ok := unixListening(filepath.Join(t.TempDir(), "missing"), "/x"); ok {
		t.Error("ok for a missing table")
	}
}

func TestWithPCIeRootPort(t *testing.T) {
	c := defaultConfig()
	if err := WithKernel("/img/vmlinuz")(&c); err != nil {
		t.Fatal(err)
	}
	if err := WithPCIeRootPort("rp1", 5)(&c); err != nil {
		t.Fatal(err)
	}
	args, err := qemuArgs(&c, testPaths(), false, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "pcie-root-port,id=rp1,bus=pcie.0,chassis=5,addr=0x5"
	if got := pairs(args, "-device"); len(got) != 1 || got[0] != want {
		t.Errorf("-device = %q, want %q", got, want)
	}
	for _, bad := range []struct {
		id   string
		slot uint8
	}{{"", 5}, {"rp,1", 5}, {"rp=1", 5}, {"rp1", 0}, {"rp1", 0x1f}} {
		if err := WithPCIeRootPort(bad.id, bad.slot)(&c); err == nil {
			t.Errorf("WithPCIeRootPort(%q, %#x) accepted", bad.id, bad.slot)
		}
	}
}
