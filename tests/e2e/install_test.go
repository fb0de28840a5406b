//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	"github.com/sandbox-guest/sandbox-guest/image-builder/kataconfig"
)

// TestMakeInstall runs `make install` with the built image into a
// temporary DESTDIR, once with the defaults and once with another PREFIX
// and Kata configuration directory, and checks that the drop-in parses as
// the Kata runtime parses it and names the installed kernel and initrd.
func TestMakeInstall(t *testing.T) {
	img := imageDir(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir() // keeps the tree's bin/ as it is
	for _, c := range []struct {
		vars     []string
		prefix   string
		fragment string
	}{
		{nil, "/usr", "/usr/share/defaults/kata-containers/config.d/50-sandbox-guest.toml"},
		{[]string{"PREFIX=/opt/sg", "KATA_CONFIG_DIR=/etc/kata-containers"}, "/opt/sg", "/etc/kata-containers/config.d/50-sandbox-guest.toml"},
	} {
		dest := t.TempDir()
		args := append([]string{"-C", root, "--no-print-directory", "install", "DESTDIR=" + dest, "BIN=" + bin, "INSTALL_IMAGE_DIR=" + img}, c.vars...)
		cmd := exec.Command("make", args...)
		cmd.Env = append(os.Environ(), "MAKEFLAGS=") // not the outer make's flags
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		q, err := kataconfig.Verify(dest, c.fragment)
		if err != nil {
			t.Fatalf("%v\nmake install said:\n%s", err, out)
		}
		l := kataconfig.Layout{Prefix: c.prefix}
		if q.Kernel != l.KernelPath() || q.Initrd != l.InitrdPath() {
			t.Errorf("drop-in names %s and %s; want them under PREFIX %s", q.Kernel, q.Initrd, c.prefix)
		}
		for src, dst := range map[string]string{"vmlinuz": q.Kernel, "initrd.img": q.Initrd} {
			a, _ := os.ReadFile(filepath.Join(img, src))
			b, _ := os.ReadFile(filepath.Join(dest, dst))
			if len(a) == 0 || !bytes.Equal(a, b) {
				t.Errorf("%s installed as %s differs from the image's", src, dst)
			}
		}
		line, err := os.ReadFile(filepath.Join(img, "cmdline"))
		if err != nil {
			t.Fatal(err)
		}
		if want, _, _ := kataconfig.KernelParams(string(line)); q.KernelParams != want || want == "" {
			t.Errorf("kernel_params %q; want %q (from %s/cmdline)", q.KernelParams, want, img)
		}
		agentctl := filepath.Join(dest, l.AgentctlPath())
		if out, err := exec.Command(agentctl, "-h").CombinedOutput(); !strings.Contains(string(out), "usage: agentctl") {
			t.Errorf("installed agentctl -h: %v\n%s", err, out)
		}
	}
}

// kataRuntimeParams is what the Kata Go runtime puts on a q35 guest's
// command line before the configuration's kernel_params (virtcontainers:
// qemu_amd64.go's kernelParams, quiet when not debugging, panic=1, nr_cpus
// from default_maxvcpus, selinux=0 with guest SELinux disabled, and
// scsi_mod.scan=none for virtio-scsi), with its console: hvc0 and hvc1 on
// a virtio-serial device (qemu_arch_base.go's appendConsole).
const kataRuntimeParams = "tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 i8042.dumbkbd=1 " +
	"i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k cryptomgr.notests net.ifnames=0 pci=lastbus=0 " +
	"console=hvc0 console=hvc1 quiet panic=1 nr_cpus=4 selinux=0 scsi_mod.scan=none"

// TestKataCommandLine boots the image with the command line the Kata
// runtime assembles from the drop-in's kernel_params, and its console
// device, and runs a container from the virtio-fs share: the options left
// to the runtime, and the runtime's own, must not keep the agent from
// serving, and the agent's log must reach the console the runtime reads
// it from.
func TestKataCommandLine(t *testing.T) {
	img := imageDir(t)
	line, err := os.ReadFile(filepath.Join(img, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	params, _, err := kataconfig.KernelParams(string(line))
	if err != nil {
		t.Fatal(err)
	}
	hvc := filepath.Join(t.TempDir(), "hvc0.log")
	s := bootSuite(t, vmm.WithCmdline(kataRuntimeParams+" "+params), vmm.WithExtraArgs(
		"-device", "virtio-serial-pci,id=serial0,max_ports=2",
		"-device", "virtconsole,chardev=charconsole0,id=console0",
		"-chardev", "file,id=charconsole0,path="+hvc))
	if log, err := os.ReadFile(hvc); err != nil || !bytes.Contains(log, []byte(`"msg":"serving"`)) {
		t.Errorf("the agent's start-up log is not on hvc0 (%v):\n%s", err, log)
	}
	t.Run("HealthCheck", s.testHealth)
	t.Run("CreateSandbox", s.testCreateSandbox)
	t.Run("ContainerStdoutAndExitCode", s.testContainerExitCode)
}
