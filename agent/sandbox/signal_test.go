package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// A busybox sleep as container init: no handler for anything.
const statusNoHandlers = `Name:	sleep
Pid:	1234
SigQ:	0/31711
SigPnd:	0000000000000000
ShdPnd:	0000000000000000
SigBlk:	0000000000000000
SigIgn:	0000000000000000
SigCgt:	0000000000000000
CapInh:	0000000000000000
`

func TestStatusHandles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status string
		sig    unix.Signal
		want   bool
	}{
		{"no handlers", statusNoHandlers, unix.SIGTERM, false},
		// sh with trap TERM: bit 14 (SIGTERM is 15).
		{"caught", strings.Replace(statusNoHandlers, "SigCgt:\t0000000000000000", "SigCgt:\t0000000000004000", 1), unix.SIGTERM, true},
		{"caught other", strings.Replace(statusNoHandlers, "SigCgt:\t0000000000000000", "SigCgt:\t0000000000000002", 1), unix.SIGTERM, false},
		{"blocked", strings.Replace(statusNoHandlers, "SigBlk:\t0000000000000000", "SigBlk:\t0000000000004000", 1), unix.SIGTERM, true},
		{"ignored", strings.Replace(statusNoHandlers, "SigIgn:\t0000000000000000", "SigIgn:\t0000000000004000", 1), unix.SIGTERM, true},
		// A Go program (runc's init before exec) catches nearly everything.
		{"go runtime", strings.Replace(statusNoHandlers, "SigCgt:\t0000000000000000", "SigCgt:\tfffffffe7fc1feff", 1), unix.SIGTERM, true},
		{"signal 64", strings.Replace(statusNoHandlers, "SigCgt:\t0000000000000000", "SigCgt:\t8000000000000000", 1), unix.Signal(64), true},
		{"garbage mask", strings.Replace(statusNoHandlers, "SigCgt:\t0000000000000000", "SigCgt:\tzz", 1), unix.SIGTERM, false},
		{"empty", "", unix.SIGTERM, false},
		{"signal 0", statusNoHandlers, 0, false},
		{"signal out of range", statusNoHandlers, 65, false},
	} {
		if got := statusHandles([]byte(tc.status), tc.sig); got != tc.want {
			t.Errorf("%s: statusHandles(%d) = %v, want %v", tc.name, tc.sig, got, tc.want)
		}
	}
}

func TestSignalHandledReadsProcStatus(t *testing.T) {
	// This test process is a Go program: the runtime catches SIGTERM.
	if !signalHandled("/proc/self/status", unix.SIGTERM) {
		t.Error("a Go process does not seem to catch SIGTERM")
	}
	dir := t.TempDir()
	if signalHandled(filepath.Join(dir, "gone", "status"), unix.SIGTERM) {
		t.Error("a missing status file counts as handled")
	}
	p := filepath.Join(dir, "status")
	if err := os.WriteFile(p, []byte(statusNoHandlers), 0o644); err != nil {
		t.Fatal(err)
	}
	if signalHandled(p, unix.SIGTERM) {
		t.Error("a process without handlers counts as handling SIGTERM")
	}
}

func TestSignalProcessArguments(t *testing.T) {
	s := newTestSandbox(t, Config{ProcRoot: t.TempDir()})
	err := s.SignalProcess("c1", "", 65)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "65") {
		t.Errorf("signal 65: %v, want InvalidArgument naming 65", err)
	}
	err = s.SignalProcess("c1", "", 1<<31)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "2147483648") {
		t.Errorf("signal 2^31: %v, want InvalidArgument naming the number", err)
	}
	// Signal 0 is valid: the request fails only on the missing container.
	if err := s.SignalProcess("c1", "", 0); !errdefs.IsNotFound(err) {
		t.Errorf("signal 0 to a missing container: %v, want NotFound", err)
	}
	if err := s.SignalProcess("c1", "", 64); !errdefs.IsNotFound(err) {
		t.Errorf("signal 64 to a missing container: %v, want NotFound", err)
	}
}
