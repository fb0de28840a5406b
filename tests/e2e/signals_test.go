//go:build e2e

package e2e

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

func init() {
	registerSharedGuestTest("SigtermWithoutHandlerKillsInit", (*suite).testSigtermWithoutHandler)
	registerSharedGuestTest("SharedPidnsIsTheInfraContainers", (*suite).testSharedPidns)
	registerSharedGuestTest("RefusedUpdateKeepsLimits", (*suite).testRefusedUpdate)
}

// waitWithin returns the exit status of a process, or -1 if it has not
// exited within d.
func (s *suite) waitWithin(t *testing.T, cid, execID string, d time.Duration) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(s.rpcCtx(t), d)
	defer cancel()
	r, err := s.cli.Agent.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: execID})
	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		return -1
	}
	check(t, "WaitProcess "+cid, err)
	return r.Status
}

func (s *suite) signal(t *testing.T, cid, execID string, sig syscall.Signal) error {
	t.Helper()
	_, err := s.cli.Agent.SignalProcess(s.rpcCtx(t), &pb.SignalProcessRequest{ContainerId: cid, ExecId: execID, Signal: uint32(sig)})
	return err
}

// awaitPid1 waits until PID 1 of container cid's pid namespace runs prog
// (libcontainer's init, a Go program that catches SIGTERM, runs first).
func (s *suite) awaitPid1(t *testing.T, cid, prog string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, _ := s.exec(t, cid, false, "cat", "/proc/1/cmdline")
		if strings.HasPrefix(out, prog+"\x00") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("PID 1 of %s runs %q, not %s", cid, out, prog)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testSigtermWithoutHandler: containerd's delete path sends SIGTERM with
// exec id "". A busybox sleep as container init has no SIGTERM handler, so
// as a pid-namespace init it would ignore SIGTERM and the pod delete would
// wait out its grace period; the agent sends SIGKILL instead, as upstream.
func (s *suite) testSigtermWithoutHandler(t *testing.T) {
	const cid = "sigterm-sleep"
	s.createContainer(t, cid, []string{"sleep", "3600"})
	s.awaitPid1(t, cid, "sleep")
	// Signal 0: a liveness check, accepted. Beyond 64: refused, named.
	if err := s.signal(t, cid, "", 0); err != nil {
		t.Errorf("signal 0: %v", err)
	}
	if err := s.signal(t, cid, "", 65); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "65") {
		t.Errorf("signal 65: %v, want InvalidArgument naming 65", err)
	}
	start := time.Now()
	check(t, "SignalProcess(SIGTERM, exec id \"\")", s.signal(t, cid, "", syscall.SIGTERM))
	st := s.waitWithin(t, cid, "", 20*time.Second)
	t.Logf("SIGTERM to a sleep init: exit status %d after %v", st, time.Since(start).Round(time.Millisecond))
	if st != 128+int32(syscall.SIGKILL) {
		t.Errorf("exit status %d after SIGTERM, want %d (sent as SIGKILL) within 20s", st, 128+int32(syscall.SIGKILL))
	}
	s.remove(t, cid)
}

// createShared creates and starts container cid as the runtime does in a
// shareProcessNamespace pod: the infra container annotated "sandbox" and
// without sandbox_pidns, application containers with it.
func (s *suite) createShared(t *testing.T, cid string, infra bool, args ...string) error {
	t.Helper()
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, cid), s.bb); err != nil {
		t.Fatal(err)
	}
	spec := fixture.Spec(sandboxID, cid, args)
	if infra {
		spec.Annotations["io.kubernetes.cri.container-type"] = "sandbox"
	}
	ctx := s.rpcCtx(t)
	if _, err := s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid, ExecId: cid, OCI: spec, SandboxPidns: !infra,
	}); err != nil {
		return err
	}
	_, err := s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
	check(t, "StartContainer "+cid, err)
	return nil
}

// testSharedPidns: every application container of a shareProcessNamespace
// pod sees the infra (pause) process as PID 1, and an application
// container's exit leaves the namespace to the next one. Once the infra
// process is gone, joining is refused with an error that says so.
func (s *suite) testSharedPidns(t *testing.T) {
	const pause = "pidns-pause"
	if err := s.createShared(t, pause, true, "sleep", "3600"); err != nil {
		check(t, "CreateContainer "+pause, err)
	}
	for _, app := range []string{"pidns-app1", "pidns-app2"} {
		err := s.createShared(t, app, false, "sh", "-c", `tr '\0' ' ' </proc/1/cmdline; echo; echo $$`)
		check(t, "CreateContainer "+app, err)
		out := s.readStdout(t, app, app)
		if st := s.wait(t, app, app); st != 0 {
			t.Fatalf("%s exit status %d, output %q", app, st, out)
		}
		s.remove(t, app)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || strings.TrimSpace(lines[0]) != "sleep 3600" || lines[1] == "1" {
			t.Fatalf("%s: PID 1 and own pid %q; want the pause process (sleep 3600) as PID 1", app, out)
		}
	}
	check(t, "SIGKILL the pause container", s.signal(t, pause, "", syscall.SIGKILL))
	s.wait(t, pause, pause)
	err := s.createShared(t, "pidns-app3", false, "true")
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "has exited") {
		t.Errorf("joining the pid namespace of an exited pause process: %v, want FailedPrecondition saying it exited", err)
	}
	s.remove(t, pause)
}

// testRefusedUpdate: an update the kernel refuses part of (cgroup v2 in
// the guest writes the memory limit before the CPU period) leaves the
// previous limits in force.
func (s *suite) testRefusedUpdate(t *testing.T) {
	const cid = "update-refused"
	const old, refused = 48 << 20, 64 << 20
	s.createContainer(t, cid, []string{"sleep", "3600"}, fixture.WithMemoryLimit(old))
	limit := func() uint64 {
		r, err := s.cli.Agent.StatsContainer(s.rpcCtx(t), &pb.StatsContainerRequest{ContainerId: cid})
		check(t, "StatsContainer", err)
		return r.GetCgroupStats().GetMemoryStats().GetUsage().GetLimit()
	}
	if got := limit(); got != old {
		t.Fatalf("memory limit %d, want %d", got, old)
	}
	_, err := s.cli.Agent.UpdateContainer(s.rpcCtx(t), &pb.UpdateContainerRequest{ContainerId: cid,
		Resources: &pb.LinuxResources{Memory: &pb.LinuxMemory{Limit: refused, Swap: refused}, CPU: &pb.LinuxCPU{Period: 10, Quota: 5}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("update with a 10us CPU period: %v, want InvalidArgument", err)
	}
	if got := limit(); got != old {
		t.Errorf("memory limit %d after a refused update, want the previous %d", got, old)
	}
	check(t, "SIGKILL", s.signal(t, cid, "", syscall.SIGKILL))
	s.wait(t, cid, cid)
	_, err = s.cli.Agent.UpdateContainer(s.rpcCtx(t), &pb.UpdateContainerRequest{ContainerId: cid,
		Resources: &pb.LinuxResources{Memory: &pb.LinuxMemory{Limit: old}}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("update of an exited container: %v, want FailedPrecondition", err)
	}
	s.remove(t, cid)
}
