package initsys

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/reaper"
)

// ConsoleOptions configure the debug console.
type ConsoleOptions struct {
	// Enabled is agent.debug_console.
	Enabled bool
	// Port is agent.debug_console_vport; 0 runs the shell on /dev/console.
	Port uint32
	// Shell defaults to /bin/sh; without it there is no console.
	Shell string
	// Listen defaults to a vsock listener on Port.
	Listen func(port uint32) (net.Listener, error)
	// Console is the device used when Port is 0 (default /dev/console).
	Console string
	Log     *slog.Logger
}

// StartDebugConsole starts the debug console in the background until ctx
// ends. It does nothing unless enabled and a shell exists in the image.
func StartDebugConsole(ctx context.Context, o ConsoleOptions) error {
	if !o.Enabled {
		return nil
	}
	if o.Shell == "" {
		o.Shell = "/bin/sh"
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if fi, err := os.Stat(o.Shell); err != nil || fi.IsDir() {
		o.Log.Warn("debug console requested but the image has no shell", "shell", o.Shell)
		return nil
	}
	if o.Port == 0 {
		go consoleLoop(ctx, o)
		return nil
	}
	if o.Listen == nil {
		o.Listen = func(port uint32) (net.Listener, error) { return vsock.ListenContextID(unix.VMADDR_CID_ANY, port, nil) }
	}
	l, err := o.Listen(o.Port)
	if err != nil {
		return fmt.Errorf("debug console: listen on port %d: %w", o.Port, err)
	}
	context.AfterFunc(ctx, func() { l.Close() })
	o.Log.Info("debug console listening", "port", o.Port)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := shellOnConn(ctx, o.Shell, c); err != nil {
					o.Log.Warn("debug console session", "error", err)
				}
			}()
		}
	}()
	return nil
}

// consoleLoop keeps a shell on the console, restarting it when it exits.
func consoleLoop(ctx context.Context, o ConsoleOptions) {
	dev := o.Console
	if dev == "" {
		dev = "/dev/console"
	}
	for ctx.Err() == nil {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			o.Log.Warn("debug console", "device", dev, "error", err)
			return
		}
		cmd := exec.CommandContext(ctx, o.Shell)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, f
		cmd.Env = consoleEnv()
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := reaper.RunCmd(cmd); err != nil {
			o.Log.Debug("debug console shell ended", "error", err)
		}
		f.Close()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func consoleEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=vt100", "HOME=/"}
}

// shellOnConn runs the shell on a fresh pseudo-terminal joined to c, so
// that job control and line editing work for the person at the other end.
func shellOnConn(ctx context.Context, shell string, c net.Conn) error {
	ptm, pts, err := openPTY()
	if err != nil {
		return err
	}
	defer ptm.Close()
	cmd := exec.CommandContext(ctx, shell)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.Env = consoleEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	wait, err := reaper.StartCmd(cmd)
	if err != nil {
		pts.Close()
		return fmt.Errorf("start %s: %w", shell, err)
	}
	pts.Close()
	go func() { _, _ = io.Copy(ptm, c) }()
	go func() { _, _ = io.Copy(c, ptm) }()
	err = wait()
	// Let the last output reach the connection before it closes.
	time.Sleep(50 * time.Millisecond)
	return err
}

func openPTY() (ptm, pts *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	ptm = os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	pts, err = os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptm.Close()
		return nil, nil, fmt.Errorf("open %s: %w", name, err)
	}
	return ptm, pts, nil
}
