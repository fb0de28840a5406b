package container

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestPidHandleFollowsItsProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	h, err := openPidHandle(cmd.Process.Pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal(err)
	}
	defer h.close()
	if ok, err := h.running(); err != nil || !ok {
		t.Fatalf("live process: running = %v, %v", ok, err)
	}
	_ = cmd.Process.Kill()
	// Exited but not yet reaped: a zombie no longer runs.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := h.running()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("killed process still reported running")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Wait()
	// Reaped: the pid may now name another process; the handle does not.
	if ok, _ := h.running(); ok {
		t.Fatal("reaped process reported running")
	}
}

func TestInitRunningNeedsAHandle(t *testing.T) {
	c := &Container{id: "c1", init: &Process{pid: 1}}
	err := c.InitRunning()
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "not tracked") {
		t.Fatalf("InitRunning without a handle: %v", err)
	}
	if _, err := c.PidNamespacePath("/proc"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("PidNamespacePath without a handle: %v", err)
	}
}

func TestInitRunningReportsExit(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	h, err := openPidHandle(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	c := &Container{id: "c1", init: &Process{pid: cmd.Process.Pid}, initHandle: h}
	defer h.close()
	p, err := c.PidNamespacePath("/proc")
	if err != nil || p != fmt.Sprintf("/proc/%d/ns/pid", cmd.Process.Pid) {
		t.Fatalf("PidNamespacePath = %q, %v", p, err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	err = c.InitRunning()
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "has exited") {
		t.Fatalf("InitRunning after exit: %v", err)
	}
}
