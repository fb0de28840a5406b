// Command qemuguest is the init of the tiny guest the hvsock QEMU test boots:
// it loads the virtio and vsock modules, echoes every stream accepted on vsock
// port 1024, runs guest-initiated checks against the host, and powers off
// when a stream on port 1025 says "poweroff".
package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	echoPort    = 1024
	controlPort = 1025
	hostPort    = 5000 // a host listener exists
	absentPort  = 6000 // no host listener
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "qemuguest: "+format+"\n", args...)
}

func main() {
	_ = unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	_ = unix.Mount("proc", "/proc", "proc", 0, "")
	_ = unix.Mount("sysfs", "/sys", "sysfs", 0, "")
	if err := loadModules("/modules"); err != nil {
		logf("FAIL load modules: %v", err)
		powerOff()
	}
	echo, err := listen(echoPort)
	if err != nil {
		logf("FAIL listen %d: %v", echoPort, err)
		powerOff()
	}
	control, err := listen(controlPort)
	if err != nil {
		logf("FAIL listen %d: %v", controlPort, err)
		powerOff()
	}
	go serveEcho(echo)
	logf("ready")
	go guestInitiated()
	for {
		fd, _, err := unix.Accept(control)
		if err != nil {
			logf("FAIL accept control: %v", err)
			continue
		}
		f := os.NewFile(uintptr(fd), "control")
		b, _ := io.ReadAll(f)
		f.Close()
		if strings.TrimSpace(string(b)) == "poweroff" {
			logf("powering off")
			powerOff()
		}
	}
}

func loadModules(dir string) error {
	order, err := os.ReadFile(filepath.Join(dir, "order"))
	if err != nil {
		return err
	}
	for _, name := range strings.Fields(string(order)) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	// The device probes asynchronously; wait for the transport.
	for i := 0; i < 100; i++ {
		if cid, err := localCID(); err == nil && cid > 2 && cid != unix.VMADDR_CID_ANY {
			logf("local cid %d", cid)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("no vsock transport")
}

func localCID() (uint32, error) {
	fd, err := unix.Open("/dev/vsock", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.IoctlGetUint32(fd, unix.IOCTL_VM_SOCKETS_GET_LOCAL_CID)
}

func listen(port uint32) (int, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		return -1, err
	}
	return fd, unix.Listen(fd, 64)
}

func serveEcho(ln int) {
	for {
		fd, _, err := unix.Accept(ln)
		if err != nil {
			logf("FAIL accept echo: %v", err)
			return
		}
		go func() {
			f := os.NewFile(uintptr(fd), "echo")
			defer f.Close()
			if _, err := io.Copy(f, f); err != nil {
				logf("FAIL echo copy: %v", err)
				return
			}
			_ = unix.Shutdown(fd, unix.SHUT_WR)
			// Wait for the host to close before closing our end.
			_, _ = f.Read(make([]byte, 1))
		}()
	}
}

func connect(port uint32) (int, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: port}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// guestInitiated sends 1 MiB to the host listener, expects it echoed, and
// expects a refusal where nothing listens.
func guestInitiated() {
	if _, err := connect(absentPort); errors.Is(err, unix.ECONNRESET) {
		logf("guest-initiated refused: ok")
	} else {
		logf("FAIL guest-initiated to absent port: %v", err)
	}
	fd, err := connect(hostPort)
	if err != nil {
		logf("FAIL guest-initiated connect: %v", err)
		return
	}
	f := os.NewFile(uintptr(fd), "out")
	defer f.Close()
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	start := time.Now()
	go func() {
		_, _ = f.Write(data)
		_ = unix.Shutdown(fd, unix.SHUT_WR)
	}()
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		logf("FAIL guest-initiated echo: %d bytes, %v", len(got), err)
		return
	}
	logf("guest-initiated echo: ok %x in %v", sha256.Sum256(got), time.Since(start).Round(time.Millisecond))
}

func powerOff() {
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
