package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// waitWithin returns the exit status of a process, or -1 if it has not
// exited within d.
func (a *agent) waitWithin(cid, execID string, d time.Duration) int32 {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r, err := a.cli.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: execID})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
			return -1
		}
		a.t.Fatalf("WaitProcess %s/%s: %v", cid, execID, err)
	}
	return r.Status
}

func (a *agent) signal(cid, execID string, sig uint32) {
	a.t.Helper()
	if _, err := a.cli.SignalProcess(ctxT(a.t, 10*time.Second), &pb.SignalProcessRequest{ContainerId: cid, ExecId: execID, Signal: sig}); err != nil {
		a.t.Fatalf("SignalProcess %s/%q %d: %v", cid, execID, sig, err)
	}
}

// readLine reads stdout until it holds a whole line.
func (a *agent) readLine(cid, execID string) string {
	a.t.Helper()
	ctx := ctxT(a.t, 10*time.Second)
	var b strings.Builder
	for !strings.Contains(b.String(), "\n") {
		r, err := a.cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: cid, ExecId: execID, Len: 100})
		if err != nil || len(r.Data) == 0 {
			a.t.Fatalf("read %s/%s: %q, %v", cid, execID, b.String(), err)
		}
		b.Write(r.Data)
	}
	return b.String()
}

// awaitExec waits until the container's init runs prog: until then it is
// still libcontainer's init, a Go program that catches SIGTERM.
func (a *agent) awaitExec(cid, prog string) {
	a.t.Helper()
	c, err := a.sb.Container(cid)
	if err != nil {
		a.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c.InitPid()))
		if strings.HasPrefix(string(b), prog+"\x00") {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("init of %s runs %q, not %s", cid, b, prog)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSigtermWithoutHandlerKillsInit: a container init without a SIGTERM
// handler (busybox sleep) ignores SIGTERM as a pid-namespace init, so the
// agent sends SIGKILL, whether the runtime addresses it by "" (containerd's
// delete path) or by the container id (its stop path).
func TestSigtermWithoutHandlerKillsInit(t *testing.T) {
	a := startAgent(t)
	for _, execID := range []string{"", "byid"} {
		cid := "sleep" + execID
		if execID != "" {
			execID = cid
		}
		a.run(cid, a.spec(false, "/bin/sleep", "1000"))
		a.awaitExec(cid, "/bin/sleep")
		a.signal(cid, execID, 15)
		if code := a.waitWithin(cid, "", 10*time.Second); code != 128+9 {
			t.Errorf("exec id %q: after SIGTERM exit %d, want 137 (SIGKILL) within 10s", execID, code)
		}
		a.remove(cid)
	}
}

// TestSigtermEmptyExecIDIsInitOnly: exec id "" with SIGTERM signals the
// init process only; every process gets a signal only with SIGKILL.
func TestSigtermEmptyExecIDIsInitOnly(t *testing.T) {
	a := startAgent(t)
	a.run("trap", a.spec(false, "/bin/sh", "-c", "trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.1; done"))
	if l := a.readLine("trap", ""); l != "ready\n" {
		t.Fatalf("init said %q", l)
	}
	a.exec("trap", "side", false, "/bin/sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done")
	if l := a.readLine("trap", "side"); l != "ready\n" {
		t.Fatalf("exec said %q", l)
	}
	a.signal("trap", "", 15)
	// The init has a handler: it gets SIGTERM itself, not SIGKILL.
	if l := a.readLine("trap", ""); l != "got TERM\n" {
		t.Fatalf("init after SIGTERM said %q, want its trap's output", l)
	}
	if code := a.waitWithin("trap", "side", time.Second); code != -1 {
		t.Fatalf("exec'd process exited (%d) on SIGTERM with exec id \"\": only the init is meant", code)
	}
	// Signal 0 is a liveness check; it changes nothing.
	a.signal("trap", "", 0)
	a.signal("trap", "side", 0)
	if code := a.waitWithin("trap", "", 300*time.Millisecond); code != -1 {
		t.Fatalf("init exited (%d) after signal 0", code)
	}
	a.signal("trap", "", 9)
	if code := a.waitWithin("trap", "side", 10*time.Second); code != 137 {
		t.Fatalf("exec'd process after SIGKILL with exec id \"\": exit %d, want 137", code)
	}
	if code := a.waitWithin("trap", "", 10*time.Second); code != 137 {
		t.Fatalf("init after SIGKILL: exit %d, want 137", code)
	}
	// Both on an exited process: no error (the runtime's stop sequence).
	a.signal("trap", "", 0)
	a.signal("trap", "", 15)
	a.remove("trap")
	_, err := a.cli.SignalProcess(ctxT(t, 10*time.Second), &pb.SignalProcessRequest{ContainerId: "trap", Signal: 0})
	wantCode(t, err, codes.NotFound, `container "trap"`)
}

// createIn creates and starts container id with annotations, sharing the
// sandbox pid namespace or not; it returns the CreateContainer error.
func (a *agent) createIn(id string, typ string, sandboxPID bool, args ...string) error {
	spec := a.spec(false, args...)
	if typ != "" {
		spec.Annotations = map[string]string{"io.kubernetes.cri.container-type": typ, "io.kubernetes.cri.sandbox-id": "pod"}
	}
	ctx := ctxT(a.t, 30*time.Second)
	if _, err := a.cli.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: spec, SandboxPidns: sandboxPID}); err != nil {
		return err
	}
	a.start(id)
	return nil
}

// TestSharedPidnsIsTheInfraContainers: as the runtime sends it (the pause
// container without sandbox_pidns, application containers with it), every
// application container sees the pause process as PID 1, and one's exit
// leaves the namespace to the others. Once the pause process is gone,
// joining is refused with an error naming it.
func TestSharedPidnsIsTheInfraContainers(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 60*time.Second)
	if _, err := a.cli.CreateSandbox(ctx, &pb.CreateSandboxRequest{SandboxId: "pod", SandboxPidns: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.createIn("pause", "sandbox", false, "/bin/sleep", "4343"); err != nil {
		t.Fatal(err)
	}
	pid1 := func(id string) string {
		if err := a.createIn(id, "container", true, "/bin/sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo; echo $$"); err != nil {
			t.Fatalf("CreateContainer %s: %v", id, err)
		}
		out, err := a.readAll(ctx, id, "", false)
		if err != nil {
			t.Fatal(err)
		}
		if code := a.wait(id, ""); code != 0 {
			t.Fatalf("%s exited %d: %q", id, code, out)
		}
		a.remove(id)
		return out
	}
	for _, id := range []string{"app1", "app2"} {
		out := pid1(id)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || strings.TrimSpace(lines[0]) != "/bin/sleep 4343" || lines[1] == "1" {
			t.Fatalf("%s: PID 1 and own pid %q; want the pause process (/bin/sleep 4343) as PID 1", id, out)
		}
	}
	a.signal("pause", "", 9)
	a.wait("pause", "")
	err := a.createIn("app3", "container", true, "/bin/true")
	wantCode(t, err, codes.FailedPrecondition, `infra container "pause"`)
	if err != nil && !strings.Contains(err.Error(), "has exited") {
		t.Fatalf("error %v does not say the owner exited", err)
	}
	// The refused container left nothing behind: its id is free.
	if err := a.createIn("app3", "container", false, "/bin/true"); err != nil {
		t.Fatalf("id of the refused container: %v", err)
	}
	a.wait("app3", "")
	a.remove("app3")
	a.remove("pause")
	// With the infra container removed, sharing is refused too.
	err = a.createIn("app4", "container", true, "/bin/true")
	wantCode(t, err, codes.FailedPrecondition, "no infra container")
}

// memLimitFile is the cgroup file holding the container's memory limit.
func memLimitFile(t *testing.T, a *agent, id string) string {
	t.Helper()
	c, err := a.sb.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	paths := c.CgroupPaths()
	if cgroups.IsCgroup2UnifiedMode() {
		return filepath.Join(paths[""], "memory.max")
	}
	return filepath.Join(paths["memory"], "memory.limit_in_bytes")
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestRefusedUpdateKeepsLimits: an update the kernel refuses part of
// leaves every limit as it was, in the cgroup and for later updates.
func TestRefusedUpdateKeepsLimits(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	a.run("upd", a.spec(false, "/bin/sleep", "1000"))
	const old, refused = 48 << 20, 64 << 20
	if _, err := a.cli.UpdateContainer(ctx, &pb.UpdateContainerRequest{ContainerId: "upd",
		Resources: &pb.LinuxResources{Memory: &pb.LinuxMemory{Limit: old}}}); err != nil {
		t.Fatal(err)
	}
	limit := memLimitFile(t, a, "upd")
	if got := readTrim(t, limit); got != fmt.Sprint(old) {
		t.Fatalf("%s = %s after update, want %d", limit, got, old)
	}
	// The memory limit is written before the CPU period, which the kernel
	// refuses (below 1 ms).
	_, err := a.cli.UpdateContainer(ctx, &pb.UpdateContainerRequest{ContainerId: "upd",
		Resources: &pb.LinuxResources{Memory: &pb.LinuxMemory{Limit: refused}, CPU: &pb.LinuxCPU{Period: 10, Quota: 5}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("update with a 10us CPU period: %v, want InvalidArgument", err)
	}
	if got := readTrim(t, limit); got != fmt.Sprint(old) {
		t.Fatalf("%s = %s after a refused update, want the previous %d", limit, got, old)
	}
	// A later update starts from the limits in force, not the refused ones.
	if _, err := a.cli.UpdateContainer(ctx, &pb.UpdateContainerRequest{ContainerId: "upd",
		Resources: &pb.LinuxResources{Pids: &pb.LinuxPids{Limit: 100}}}); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, limit); got != fmt.Sprint(old) {
		t.Fatalf("%s = %s after a pids update, want the previous %d", limit, got, old)
	}
	a.remove("upd")
}

// TestUpdateExitedContainer: updating a container that is not running is a
// precondition failure, not a bad argument.
func TestUpdateExitedContainer(t *testing.T) {
	a := startAgent(t)
	a.run("done", a.spec(false, "/bin/true"))
	a.wait("done", "")
	_, err := a.cli.UpdateContainer(ctxT(t, 30*time.Second), &pb.UpdateContainerRequest{ContainerId: "done",
		Resources: &pb.LinuxResources{Memory: &pb.LinuxMemory{Limit: 48 << 20}}})
	wantCode(t, err, codes.FailedPrecondition, "not running")
	// Nor does it fail the cpuset follow-up of a CPU hot-plug: it has no
	// process to give the CPUs to.
	if err := a.sb.UpdateCpusets("0"); err != nil {
		t.Fatalf("cpuset follow-up with an exited container: %v", err)
	}
	a.remove("done")
}

// TestConcurrentUpdates drives UpdateContainer, StatsContainer, the
// hot-plug cpuset follow-up, and pause/resume on one container at once;
// run with -race, the detector checks that libcontainer's config is never
// written and read unsynchronised.
func TestConcurrentUpdates(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 60*time.Second)
	a.run("busy", a.spec(false, "/bin/sleep", "1000"))
	a.awaitExec("busy", "/bin/sleep") // running: pause needs it
	const rounds = 20
	var wg sync.WaitGroup
	errc := make(chan error, 4*rounds)
	wg.Add(4)
	go func() {
		defer wg.Done()
		for i := 0; i < rounds; i++ {
			_, err := a.cli.UpdateContainer(ctx, &pb.UpdateContainerRequest{ContainerId: "busy",
				Resources: &pb.LinuxResources{Memory: &pb.LinuxMemory{Limit: int64(64+i) << 20}, CPU: &pb.LinuxCPU{Shares: uint64(512 + i)}}})
			if err != nil {
				errc <- fmt.Errorf("update: %w", err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < rounds; i++ {
			if _, err := a.cli.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: "busy"}); err != nil {
				errc <- fmt.Errorf("stats: %w", err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < rounds; i++ {
			if err := a.sb.UpdateCpusets([]string{"0", "0-1"}[i%2]); err != nil {
				errc <- fmt.Errorf("cpuset: %w", err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < rounds/4; i++ {
			if _, err := a.cli.PauseContainer(ctx, &pb.PauseContainerRequest{ContainerId: "busy"}); err != nil {
				errc <- fmt.Errorf("pause: %w", err)
			}
			if _, err := a.cli.ResumeContainer(ctx, &pb.ResumeContainerRequest{ContainerId: "busy"}); err != nil {
				errc <- fmt.Errorf("resume: %w", err)
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	limit := memLimitFile(t, a, "busy")
	if got := readTrim(t, limit); got != fmt.Sprint((64+rounds-1)<<20) {
		t.Errorf("%s = %s after the updates, want the last one's %d", limit, got, (64+rounds-1)<<20)
	}
	a.remove("busy")
}
