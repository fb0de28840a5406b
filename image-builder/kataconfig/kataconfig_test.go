package kataconfig

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/sandbox-guest/sandbox-guest/image-builder/cmdline"
)

func defaultCmdline(t *testing.T, debug bool) string {
	t.Helper()
	o := cmdline.Default()
	o.Debug = debug
	line, err := cmdline.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	return line + "\n" // as image-builder writes build/guest/cmdline
}

func TestKernelParamsLeaveRuntimeOptionsToTheRuntime(t *testing.T) {
	for _, debug := range []bool{false, true} {
		line := defaultCmdline(t, debug)
		params, dropped, err := KernelParams(line)
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(params)
		for _, f := range fields {
			key, _, _ := strings.Cut(f, "=")
			if runtimeOwned[key] {
				t.Errorf("debug=%v: kernel_params keeps %q, which the runtime sets", debug, f)
			}
		}
		// The base file's kernel_params are replaced, not added to: the
		// cgroup v2 options must be restated.
		for _, want := range []string{"cgroup_no_v1=all", "systemd.unified_cgroup_hierarchy=1", "reboot=k"} {
			if !slices.Contains(fields, want) {
				t.Errorf("debug=%v: kernel_params %q lacks %s", debug, params, want)
			}
		}
		// Nothing is lost: kept and dropped make up the command line.
		all := append(slices.Clone(fields), dropped...)
		slices.Sort(all)
		orig := strings.Fields(line)
		slices.Sort(orig)
		if !slices.Equal(all, orig) {
			t.Errorf("debug=%v: kept %v + dropped %v != %v", debug, fields, dropped, orig)
		}
		if !slices.Contains(dropped, "console=ttyS0") || !slices.Contains(dropped, "nr_cpus=8") {
			t.Errorf("debug=%v: dropped %v", debug, dropped)
		}
	}
}

func TestKernelParamsRejectsBadCommandLines(t *testing.T) {
	for _, line := range []string{"", " \n", "quiet\x00panic=1", "a\nb", "agent.log=info\xff"} {
		if _, _, err := KernelParams(line); !errors.Is(err, ErrInvalid) {
			t.Errorf("KernelParams(%q) = %v; want ErrInvalid", line, err)
		}
	}
}

// fakeImage writes a build/guest-like directory.
func fakeImage(t *testing.T, line string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string]string{"vmlinuz": "bzImage bytes", "initrd.img": "initrd bytes", "cmdline": line} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestInstallIntoDestdir(t *testing.T) {
	img := fakeImage(t, defaultCmdline(t, false))
	agentctl := filepath.Join(t.TempDir(), "agentctl")
	if err := os.WriteFile(agentctl, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	in, err := Install(InstallOptions{ImageDir: img, DestDir: dest, Layout: Layout{Prefix: "/usr"}, Agentctl: agentctl})
	if err != nil {
		t.Fatal(err)
	}
	want := Installed{
		Kernel:   "/usr/share/kata-containers/vmlinuz-sandbox-guest.container",
		Initrd:   "/usr/share/kata-containers/kata-containers-initrd-sandbox-guest.img",
		Fragment: "/usr/share/defaults/kata-containers/config.d/50-sandbox-guest.toml",
		Agentctl: "/usr/bin/agentctl",
	}
	if in.Kernel != want.Kernel || in.Initrd != want.Initrd || in.Fragment != want.Fragment || in.Agentctl != want.Agentctl {
		t.Fatalf("Install = %+v; want %+v", in, want)
	}
	for p, m := range map[string]struct {
		data string
		mode os.FileMode
	}{in.Kernel: {"bzImage bytes", 0o644}, in.Initrd: {"initrd bytes", 0o644}, in.Agentctl: {"#!/bin/sh\n", 0o755}} {
		got, err := os.ReadFile(filepath.Join(dest, p))
		if err != nil || string(got) != m.data {
			t.Errorf("%s = %q, %v; want %q", p, got, err, m.data)
		}
		if st, err := os.Stat(filepath.Join(dest, p)); err != nil || st.Mode().Perm() != m.mode {
			t.Errorf("%s mode = %v, %v; want %v", p, st.Mode().Perm(), err, m.mode)
		}
	}
	// The runtime parses every file in config.d: only the fragment is there.
	ents, err := os.ReadDir(filepath.Join(dest, filepath.Dir(in.Fragment)))
	if err != nil || len(ents) != 1 || ents[0].Name() != filepath.Base(in.Fragment) {
		t.Fatalf("config.d holds %v, %v; want only the fragment", ents, err)
	}

	q, err := Verify(dest, in.Fragment)
	if err != nil {
		t.Fatal(err)
	}
	params, _, _ := KernelParams(defaultCmdline(t, false))
	if q.Kernel != in.Kernel || q.Initrd != in.Initrd || q.Image != "" || q.KernelParams != params ||
		q.MachineType != "q35" || q.SharedFS != "virtio-fs" || q.VirtioFSCache != "auto" || q.MemSlots != MemorySlots ||
		q.VirtioFSDaemon != "" || !slices.Contains(q.VirtioFSExtraArgs, "--xattr") {
		t.Fatalf("parsed fragment = %+v", q)
	}

	// Installing again replaces the files in place.
	if _, err := Install(InstallOptions{ImageDir: img, DestDir: dest, Layout: Layout{Prefix: "/usr"}}); err != nil {
		t.Fatalf("second install: %v", err)
	}
}

// The fragment lands on top of the base configuration as the runtime
// decodes it: later keys win, and the base file's rootfs image is unset.
func TestFragmentOverridesTheBaseConfiguration(t *testing.T) {
	frag, err := Fragment(Options{Kernel: "/k", Initrd: "/i", KernelParams: "cgroup_no_v1=all"})
	if err != nil {
		t.Fatal(err)
	}
	base := `[hypervisor.qemu]
kernel = "/usr/share/kata-containers/vmlinux.container"
image = "/usr/share/kata-containers/kata-containers.img"
kernel_params = "cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
shared_fs = "virtio-fs"
virtio_fs_daemon = "/usr/libexec/virtiofsd"
virtio_fs_extra_args = ["--thread-pool-size=1", "--announce-submounts"]
`
	var q QEMU
	var conf struct {
		Hypervisor struct {
			QEMU *QEMU `toml:"qemu"`
		} `toml:"hypervisor"`
	}
	conf.Hypervisor.QEMU = &q
	for _, doc := range []string{base, string(frag)} {
		if _, err := toml.Decode(doc, &conf); err != nil {
			t.Fatalf("decode: %v\n%s", err, doc)
		}
	}
	if q.Kernel != "/k" || q.Initrd != "/i" || q.Image != "" || q.KernelParams != "cgroup_no_v1=all" ||
		q.VirtioFSDaemon != "/usr/libexec/virtiofsd" ||
		!slices.Equal(q.VirtioFSExtraArgs, []string{"--thread-pool-size=1", "--announce-submounts", "--xattr"}) {
		t.Fatalf("merged = %+v", q)
	}
}

func TestLegacyVirtiofsd(t *testing.T) {
	frag, err := Fragment(Options{Kernel: "/k", Initrd: "/i", VirtiofsDaemon: "/usr/lib/qemu/virtiofsd", VirtiofsLegacy: true})
	if err != nil {
		t.Fatal(err)
	}
	var conf struct{ Hypervisor map[string]QEMU }
	if _, err := toml.Decode(string(frag), &conf); err != nil {
		t.Fatal(err)
	}
	q := conf.Hypervisor["qemu"]
	if q.VirtioFSDaemon != "/usr/lib/qemu/virtiofsd" ||
		!slices.Equal(q.VirtioFSExtraArgs, []string{"--thread-pool-size=1", "-o", "announce_submounts", "-o", "xattr"}) {
		t.Fatalf("legacy = %+v", q)
	}
	if _, err := Fragment(Options{Kernel: "/k", Initrd: "/i", VirtiofsLegacy: true}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("legacy syntax without a daemon = %v; want ErrInvalid", err)
	}
}

func TestHostilePathsAreQuotedOrRefused(t *testing.T) {
	img := fakeImage(t, "console=ttyS0 quiet tag=\"x\\y\"\n")
	dest := t.TempDir()
	prefix := `/opt/we"ird\dir with space/ü`
	in, err := Install(InstallOptions{ImageDir: img, DestDir: dest, Layout: Layout{Prefix: prefix}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := Verify(dest, in.Fragment)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(q.Kernel, prefix+"/") || q.KernelParams != `tag="x\y"` {
		t.Fatalf("parsed kernel %q, kernel_params %q", q.Kernel, q.KernelParams)
	}
	for _, l := range []Layout{
		{Prefix: "usr"},
		{Prefix: "/usr/../etc"},
		{Prefix: "/usr\nx"},
		{Prefix: "/usr", ConfigDir: "etc/kata"},
		{Prefix: "/usr", Variant: "../x"},
	} {
		if _, err := Install(InstallOptions{ImageDir: img, DestDir: t.TempDir(), Layout: l}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Install with %+v = %v; want ErrInvalid", l, err)
		}
	}
}

func TestInstallWithoutImage(t *testing.T) {
	img := t.TempDir()
	os.WriteFile(filepath.Join(img, "vmlinuz"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(img, "cmdline"), nil, 0o644) // empty
	_, err := Install(InstallOptions{ImageDir: img, DestDir: t.TempDir(), Layout: Layout{Prefix: "/usr"}})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "initrd.img, cmdline") || !strings.Contains(err.Error(), "make image") {
		t.Fatalf("Install without an image = %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	dest := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join("/etc", name)
		os.MkdirAll(filepath.Join(dest, "etc"), 0o755)
		if err := os.WriteFile(filepath.Join(dest, p), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	os.MkdirAll(filepath.Join(dest, "k"), 0o755)
	os.WriteFile(filepath.Join(dest, "k", "kernel"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(dest, "k", "empty"), nil, 0o644)
	good := "[hypervisor.qemu]\nkernel = \"/k/kernel\"\ninitrd = \"/k/kernel\"\nimage = \"\"\nshared_fs = \"virtio-fs\"\n"
	if _, err := Verify(dest, write("good.toml", good)); err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}
	for name, c := range map[string]struct {
		text string
		want error
	}{
		"missing-initrd": {strings.Replace(good, `initrd = "/k/kernel"`, `initrd = "/k/nope"`, 1), ErrNotFound},
		"empty-initrd":   {strings.Replace(good, `initrd = "/k/kernel"`, `initrd = "/k/empty"`, 1), ErrInvalid},
		"relative":       {strings.Replace(good, `kernel = "/k/kernel"`, `kernel = "k/kernel"`, 1), ErrInvalid},
		"unknown-key":    {good + "kernel_parameters = \"typo\"\n", ErrInvalid},
		"image-set":      {strings.Replace(good, `image = ""`, `image = "/k/kernel"`, 1), ErrInvalid},
		"other-vmm":      {strings.Replace(good, "hypervisor.qemu", "hypervisor.clh", 1), ErrInvalid},
	} {
		if _, err := Verify(dest, write(name+".toml", c.text)); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v; want %v", name, err, c.want)
		}
	}
	if _, err := Verify(dest, write("broken.toml", "[hypervisor.qemu\n")); err == nil {
		t.Error("Verify accepted broken TOML")
	}
}

// TestInstallBuiltImage installs the image `make image` built, when it is
// there (the end-to-end suite runs `make install` itself and requires it).
func TestInstallBuiltImage(t *testing.T) {
	img, _ := filepath.Abs(filepath.Join("..", "..", "build", "guest"))
	if _, err := os.Stat(filepath.Join(img, "vmlinuz")); err != nil {
		t.Skipf("no built image in %s (make image)", img)
	}
	dest := t.TempDir()
	in, err := Install(InstallOptions{ImageDir: img, DestDir: dest, Layout: Layout{Prefix: "/usr"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dest, in.Fragment); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{"vmlinuz": in.Kernel, "initrd.img": in.Initrd} {
		a, _ := os.ReadFile(filepath.Join(img, src))
		b, _ := os.ReadFile(filepath.Join(dest, dst))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s installed as %s differs (%d vs %d bytes)", src, dst, len(a), len(b))
		}
	}
}
