package hvsock

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The QEMU test boots a real Linux guest (Debian's 6.1 kernel and its virtio
// and vsock modules) whose init is ./internal/qemuguest, with this backend
// behind vhost-user-vsock-pci. It needs:
//
//	HVSOCK_TEST_KERNEL   path to a bzImage/vmlinuz
//	HVSOCK_TEST_MODULES  directory holding the modules below (searched recursively)
//
// e.g. from `apt-get download linux-image-6.1.0-NN-amd64 && dpkg-deb -x`.
var guestModules = []string{
	"virtio_ring.ko", "virtio.ko", "virtio_pci_modern_dev.ko", "virtio_pci_legacy_dev.ko", "virtio_pci.ko",
	"vsock.ko", "vmw_vsock_virtio_transport_common.ko", "vmw_vsock_virtio_transport.ko",
}

func TestQEMUGuest(t *testing.T) {
	kernel, modDir := os.Getenv("HVSOCK_TEST_KERNEL"), os.Getenv("HVSOCK_TEST_MODULES")
	if kernel == "" || modDir == "" {
		t.Skip("HVSOCK_TEST_KERNEL and HVSOCK_TEST_MODULES not set: no guest kernel to boot")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	dir := t.TempDir()
	initrd := buildInitramfs(t, dir, modDir)

	uds := filepath.Join(dir, "vsock.sock")
	b, err := Listen(filepath.Join(dir, "vhost.sock"), uds, 3, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	served := make(chan error, 1)
	go func() { served <- b.Serve(context.Background()) }()

	// The guest connects here, sends 1 MiB and expects it back.
	hostLn, err := net.Listen("unix", uds+"_5000")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	go func() {
		c, err := hostLn.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
		_ = c.(*net.UnixConn).CloseWrite()
	}()

	console := filepath.Join(dir, "console.log")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "512", "-smp", "1", "-no-reboot",
		"-display", "none", "-monitor", "none", "-serial", "file:"+console,
		"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 panic=-1 quiet",
		"-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-numa", "node,memdev=mem",
		"-chardev", "socket,id=vsock0,path="+filepath.Join(dir, "vhost.sock"),
		"-device", "vhost-user-vsock-pci,chardev=vsock0")
	var qemuOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &qemuOut, &qemuOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	qemuDone := make(chan error, 1)
	go func() { qemuDone <- cmd.Wait() }()
	defer func() {
		if t.Failed() {
			log, _ := os.ReadFile(console)
			t.Logf("qemu output:\n%s\nguest console:\n%s", qemuOut.String(), log)
		}
	}()

	waitConsole(t, console, "qemuguest: ready", 3*time.Minute)

	// Host-initiated: 1 MiB echoed back with matching checksum.
	start := time.Now()
	c := dialGuest(t, uds, 1024)
	data := randBytes(t, 1<<20)
	go func() {
		_, _ = c.Write(data)
		_ = c.(*net.UnixConn).CloseWrite()
	}()
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("echo of 1 MiB: %d bytes back, err %v", len(got), err)
	}
	t.Logf("host-initiated 1 MiB echo in %v", time.Since(start).Round(time.Millisecond))

	// Concurrent streams.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialGuest(t, uds, 1024)
			defer c.Close()
			d := randBytes(t, 64<<10)
			go func() {
				_, _ = c.Write(d)
				_ = c.(*net.UnixConn).CloseWrite()
			}()
			_ = c.SetReadDeadline(time.Now().Add(time.Minute))
			g, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(g, d) {
				t.Errorf("stream %d: %d bytes back, %v", i, len(g), err)
			}
		}()
	}
	wg.Wait()

	// Nothing listens on guest port 4444: the host client is closed.
	if c, line, err := tryDial(uds, 4444); err == nil {
		c.Close()
		t.Fatalf("connect to a closed guest port answered %q", line)
	}

	waitConsole(t, console, "qemuguest: guest-initiated echo: ok", time.Minute)
	waitConsole(t, console, "qemuguest: guest-initiated refused: ok", time.Minute)

	ctl := dialGuest(t, uds, 1025)
	_, _ = io.WriteString(ctl, "poweroff")
	_ = ctl.(*net.UnixConn).CloseWrite()
	defer ctl.Close()
	select {
	case err := <-qemuDone:
		if err != nil {
			t.Fatalf("qemu: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("guest did not power off")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve after QEMU exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after QEMU exited")
	}
	log, _ := os.ReadFile(console)
	if bytes.Contains(log, []byte("FAIL")) {
		t.Fatalf("guest reported a failure:\n%s", log)
	}
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "qemuguest:") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

func tryDial(uds string, port uint32) (net.Conn, string, error) {
	c, err := net.Dial("unix", uds)
	if err != nil {
		return nil, "", err
	}
	fmt.Fprintf(c, "CONNECT %d\n", port)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := readLine(c)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, "", err
	}
	if !strings.HasPrefix(line, "OK ") {
		c.Close()
		return nil, line, fmt.Errorf("reply %q", line)
	}
	return c, line, nil
}

func dialGuest(t *testing.T, uds string, port uint32) net.Conn {
	t.Helper()
	c, _, err := tryDial(uds, port)
	if err != nil {
		t.Fatalf("CONNECT %d: %v", port, err)
	}
	return c
}

func waitConsole(t *testing.T, path, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(want)) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("guest console never showed %q", want)
}

// buildInitramfs compiles the guest init and packs it with the modules into
// a newc cpio archive.
func buildInitramfs(t *testing.T, dir, modDir string) string {
	t.Helper()
	initBin := filepath.Join(dir, "init")
	build := exec.Command("go", "build", "-o", initBin, "./internal/qemuguest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build guest init: %v\n%s", err, out)
	}
	found := map[string]string{}
	_ = filepath.Walk(modDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if _, ok := found[fi.Name()]; !ok {
				found[fi.Name()] = p
			}
		}
		return nil
	})
	var cw cpioWriter
	for _, d := range []string{"dev", "proc", "sys", "modules"} {
		cw.add(d, 0o40755, nil, 0)
	}
	cw.add("dev/console", 0o20600, nil, 5<<8|1)
	initData, err := os.ReadFile(initBin)
	if err != nil {
		t.Fatal(err)
	}
	cw.add("init", 0o100755, initData, 0)
	for _, m := range guestModules {
		p, ok := found[m]
		if !ok {
			t.Fatalf("module %s not under %s", m, modDir)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cw.add("modules/"+m, 0o100644, b, 0)
	}
	cw.add("modules/order", 0o100644, []byte(strings.Join(guestModules, "\n")), 0)
	out := filepath.Join(dir, "initrd.cpio")
	if err := os.WriteFile(out, cw.finish(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// cpioWriter writes the "newc" format the kernel unpacks into its rootfs.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (w *cpioWriter) add(name string, mode uint32, data []byte, rdev uint32) {
	w.ino++
	bw := bufio.NewWriter(&w.buf)
	fmt.Fprintf(bw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev>>8, rdev&0xff, len(name)+1, 0)
	bw.WriteString(name)
	bw.WriteByte(0)
	bw.Flush()
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) finish() []byte {
	w.add("TRAILER!!!", 0, nil, 0)
	return w.buf.Bytes()
}
