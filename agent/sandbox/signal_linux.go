package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
)

// SignalProcess signals a process of a container, as upstream's agent does:
//   - exec id "" or the container id: the container's init process;
//     "" with SIGKILL: every process of the container (the runtime's
//     "all"; containerd's delete path sends "" with SIGTERM and means the
//     init only);
//   - SIGTERM to an init process that neither catches, blocks nor ignores
//     it becomes SIGKILL: the init of a pid namespace never gets a signal
//     it has no handler for, so the container would outlive every grace
//     period;
//   - signal 0 checks that the container and process exist.
func (s *Sandbox) SignalProcess(cid, execID string, sig uint32) error {
	if sig > maxSignal {
		return fmt.Errorf("signal %d out of range 0..%d: %w", sig, maxSignal, errdefs.ErrInvalidArgument)
	}
	c, err := s.Container(cid)
	if err != nil {
		return err
	}
	signal := unix.Signal(sig)
	if execID == "" && signal == unix.SIGKILL {
		return c.SignalAll(signal)
	}
	if execID != "" && execID != cid {
		if err := container.ValidateID("exec", execID); err != nil {
			return err
		}
	}
	p, err := c.Process(execID)
	if err != nil {
		return err
	}
	if p.Init && signal == unix.SIGTERM && !p.Exited() {
		status := filepath.Join(s.cfg.ProcRoot, strconv.Itoa(p.Pid()), "status")
		if !signalHandled(status, signal) {
			s.log.Info("init process has no SIGTERM handler: sending SIGKILL", "container", cid, "pid", p.Pid())
			signal = unix.SIGKILL
		}
	}
	return p.Signal(signal)
}

// signalHandled reports whether the process whose /proc/<pid>/status is at
// path catches, blocks or ignores sig (SigCgt, SigBlk, SigIgn masks; bit
// n-1 is signal n). An unreadable file counts as not handled: the process
// is gone, and SIGKILL to it is as harmless as any other signal.
func signalHandled(path string, sig unix.Signal) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	return statusHandles(b, sig)
}

func statusHandles(status []byte, sig unix.Signal) bool {
	if sig < 1 || sig > maxSignal {
		return false
	}
	bit := uint64(1) << (uint(sig) - 1)
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "SigCgt" && key != "SigBlk" && key != "SigIgn") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err == nil && mask&bit != 0 {
			return true
		}
	}
	return false
}
