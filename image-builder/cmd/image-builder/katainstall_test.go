package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKataInstallCommand(t *testing.T) {
	img := t.TempDir()
	for name, data := range map[string]string{"vmlinuz": "k", "initrd.img": "i", "cmdline": "console=ttyS0 nr_cpus=8 cgroup_no_v1=all\n"} {
		if err := os.WriteFile(filepath.Join(img, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dest := t.TempDir()
	var out bytes.Buffer
	err := run(context.Background(), []string{"kata-install", "--image-dir", img, "--destdir", dest, "--prefix", "/usr/local",
		"--config-dir", "/etc/kata-containers", "--virtiofsd", "/usr/lib/qemu/virtiofsd", "--virtiofsd-legacy"}, &out)
	if err != nil {
		t.Fatalf("kata-install: %v\n%s", err, out.String())
	}
	frag, err := os.ReadFile(filepath.Join(dest, "etc/kata-containers/config.d/50-sandbox-guest.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`kernel = "/usr/local/share/kata-containers/vmlinuz-sandbox-guest.container"`,
		`kernel_params = "cgroup_no_v1=all"`,
		`virtio_fs_daemon = "/usr/lib/qemu/virtiofsd"`,
		`"-o", "xattr"`,
	} {
		if !strings.Contains(string(frag), want) {
			t.Errorf("drop-in lacks %s:\n%s", want, frag)
		}
	}
	if !strings.Contains(out.String(), "left to the runtime: console=ttyS0 nr_cpus=8") {
		t.Errorf("output:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(dest, "usr/local/bin/agentctl")); !os.IsNotExist(err) {
		t.Errorf("agentctl installed without --agentctl: %v", err)
	}

	// No image: a clear failure naming what to run.
	err = run(context.Background(), []string{"kata-install", "--image-dir", t.TempDir(), "--destdir", dest}, &out)
	if err == nil || !strings.Contains(err.Error(), "make image") {
		t.Fatalf("kata-install without an image = %v", err)
	}
}
