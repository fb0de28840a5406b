//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/guestpath"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// Faults: each injects one failure a sandbox meets in production and
// asserts what must follow. Those that leave the guest unusable (a dead
// share, all memory eaten, QEMU killed) boot a VM of their own
// (TestFault*); the others run on the shared guest.

func init() {
	registerSharedGuestTest("FaultConnectionDrop", (*suite).testFaultConnectionDrop)
	registerSharedGuestTest("FaultForkBomb", (*suite).testFaultForkBomb)
}

// inspectorID is a container that sees the agent: the guest's /proc (in
// which PID 1 is the agent), /run and /sys/fs/cgroup are bound read-only
// under /host, and it may read PID 1's entries (CAP_SYS_PTRACE). The
// agent gives every container a pid namespace of the pod's, so its own
// /proc never shows the agent.
const inspectorID = "inspector"

func withInspector(s *pb.Spec) {
	for _, m := range [][2]string{{"/proc", "/host/proc"}, {"/run", "/host/run"}, {"/sys/fs/cgroup", "/host/cgroup"}} {
		s.Mounts = append(s.Mounts, &pb.Mount{Destination: m[1], Type: "bind", Source: m[0], Options: []string{"rbind", "ro"}})
	}
	withInspectorProcess(s.Process)
}

// inspectorStarted holds the suites whose inspector runs.
var inspectorStarted sync.Map

// inspect runs script in the inspector container (started once) and
// returns its stdout; the script fails the test on a non-zero status.
func (s *suite) inspect(t testing.TB, script string) string {
	t.Helper()
	s.mu.Lock()
	if _, ok := inspectorStarted.Load(s); !ok {
		s.createContainer(t, inspectorID, []string{"sleep", "100000"}, withInspector)
		inspectorStarted.Store(s, true)
	}
	s.mu.Unlock()
	execSeq.Lock()
	execSeq.n++
	id := fmt.Sprintf("inspect%d", execSeq.n)
	execSeq.Unlock()
	_, err := s.cli.Agent.ExecProcess(s.rpcCtx(t), &pb.ExecProcessRequest{
		ContainerId: inspectorID, ExecId: id, Process: withInspectorProcess(fixture.Process(false, "sh", "-c", script)),
	})
	check(t, "ExecProcess in the inspector", err)
	out := s.readStdout(t, inspectorID, id)
	if st := s.wait(t, inspectorID, id); st != 0 {
		t.Fatalf("inspector script %q: status %d, output %q", script, st, out)
	}
	return out
}

func withInspectorProcess(p *pb.Process) *pb.Process {
	for _, set := range []*[]string{&p.Capabilities.Bounding, &p.Capabilities.Effective, &p.Capabilities.Permitted} {
		*set = append(*set, "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH")
	}
	return p
}

// dialAgent opens a connection of its own to the agent (the suite's stays
// as it is).
func (s *suite) dialAgent(t *testing.T) *agentclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	c, err := agentclient.Dial(ctx, s.vm.AgentAddress(agentPort))
	if err != nil {
		t.Fatalf("dial the agent: %v", err)
	}
	return c
}

// testFaultConnectionDrop: the host's connection drops while a
// ReadStdout, a WaitProcess and a GetOOMEvent wait in the agent, and the
// host connects again. Nothing is lost: the output written after the
// drop, the exit status and the OOM event all reach the new connection,
// and the agent holds no waiter of the dead one.
func (s *suite) testFaultConnectionDrop(t *testing.T) {
	const cid, oomID = "dropper", "dropoom"
	const gate = "/go"
	s.createContainer(t, cid, []string{"sh", "-c",
		"echo before-drop; while [ ! -e " + gate + " ]; do sleep 0.1; done; echo after-drop; exit 7"})
	defer s.remove(t, cid)
	var got bytes.Buffer
	{
		ctx := s.rpcCtx(t)
		for !strings.Contains(got.String(), "before-drop\n") {
			r, err := s.cli.Agent.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: cid, ExecId: cid, Len: 4096})
			check(t, "ReadStdout before the drop", err)
			if len(r.Data) == 0 {
				t.Fatalf("EOF before the drop; read %q", got.String())
			}
			got.Write(r.Data)
		}
	}
	// The baseline has no connection but the suite's.
	base := s.quiesceAgent(t)
	first := s.dialAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()

	// Three long polls on the first connection, then the connection goes.
	errs := make(chan error, 3)
	go func() {
		r, err := first.Agent.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: cid, ExecId: cid, Len: 4096})
		if err == nil {
			err = fmt.Errorf("ReadStdout answered %q on a closed connection", r.Data)
		}
		errs <- err
	}()
	go func() {
		_, err := first.Agent.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: cid})
		errs <- err
	}()
	go func() {
		_, err := first.Agent.GetOOMEvent(ctx, &pb.GetOOMEventRequest{})
		errs <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for s.agentFigures(t).goroutines < base.goroutines+3 {
		if time.Now().After(deadline) {
			t.Fatalf("the three calls never reached the agent (goroutines %d, baseline %d)", s.agentFigures(t).goroutines, base.goroutines)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // all three are waiting in the agent
	first.Close()
	for i := 0; i < 3; i++ {
		select {
		case err := <-errs:
			if err == nil {
				t.Errorf("a call on the closed connection succeeded")
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("calls on the closed connection did not return")
		}
	}
	// The dead connection's waiters leave the agent.
	if now := s.settleAgent(t, base); now.goroutines > base.goroutines || now.fds > base.fds {
		t.Errorf("after the drop the agent holds the dead connection's waiters: before %v; after %v", base, now)
	}

	// What happens while no host is connected must wait for the next one.
	if err := os.WriteFile(filepath.Join(fixture.HostRootfs(s.share, cid), strings.TrimPrefix(gate, "/")), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.createContainer(t, oomID, []string{"sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"}, fixture.WithMemoryLimit(32<<20))
	defer s.remove(t, oomID)

	second := s.dialAgent(t)
	defer second.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel2()
	for {
		r, err := second.Agent.ReadStdout(ctx2, &pb.ReadStreamRequest{ContainerId: cid, ExecId: cid, Len: 4096})
		check(t, "ReadStdout after the reconnect", err)
		if len(r.Data) == 0 {
			break
		}
		got.Write(r.Data)
	}
	if got.String() != "before-drop\nafter-drop\n" {
		t.Errorf("output across the drop %q, want %q", got.String(), "before-drop\nafter-drop\n")
	}
	w, err := second.Agent.WaitProcess(ctx2, &pb.WaitProcessRequest{ContainerId: cid, ExecId: cid})
	check(t, "WaitProcess after the reconnect", err)
	if w.Status != 7 {
		t.Errorf("status after the reconnect %d, want 7", w.Status)
	}
	// Other concerns' tests may have left events; ours must come.
	for {
		ev, err := second.Agent.GetOOMEvent(ctx2, &pb.GetOOMEventRequest{})
		check(t, "GetOOMEvent after the reconnect", err)
		if ev.ContainerId == oomID {
			break
		}
		t.Logf("earlier OOM event for %q", ev.ContainerId)
	}
	if st := s.wait(t, oomID, oomID); st != 128+int32(syscall.SIGKILL) {
		t.Errorf("OOM container status %d", st)
	}
}

// withPidsLimit sets the container's pids limit.
func withPidsLimit(n int64) fixture.SpecOption {
	return func(s *pb.Spec) { s.Linux.Resources.Pids = &pb.LinuxPids{Limit: n} }
}

// testFaultForkBomb: a fork bomb in a container with a pids limit stays
// inside the limit; meanwhile the agent answers and runs execs elsewhere;
// the container is removed within its timeout and the agent holds what
// it held before.
func (s *suite) testFaultForkBomb(t *testing.T) {
	const cid = "forkbomb"
	const limit = 64
	// The inspector and the sleeper are part of the baseline.
	s.inspect(t, "true")
	sleeper := s.sleeperContainer(t)
	base := s.quiesceAgent(t)
	s.createContainer(t, cid, []string{"sh", "-c", "b() { b | b & }; b; sleep 100000"}, withPidsLimit(limit))
	// The limit is hit, again and again.
	deadline := time.Now().Add(time.Minute)
	for {
		out := s.inspect(t, "cat $(find /host/cgroup -type d -name "+cid+" | head -1)/pids.events /dev/null")
		f := strings.Fields(out)
		if len(f) >= 2 && f[0] == "max" {
			if n, _ := strconv.Atoi(f[1]); n > 0 {
				t.Logf("pids.events: %s", strings.TrimSpace(out))
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fork bomb never hit its pids limit: pids.events %q", out)
		}
		time.Sleep(time.Second)
	}
	// The agent serves while the bomb runs.
	r, err := s.cli.Health.Check(s.rpcCtx(t), &pb.CheckRequest{})
	check(t, "Check during the fork bomb", err)
	if r.Status != pb.HealthCheckResponse_SERVING {
		t.Errorf("health during the fork bomb %v", r.Status)
	}
	if out, st := s.exec(t, sleeper, false, "echo", "alive"); st != 0 || out != "alive\n" {
		t.Errorf("exec elsewhere during the fork bomb: %q, status %d", out, st)
	}
	start := time.Now()
	s.remove(t, cid)
	t.Logf("fork bomb removed in %v", time.Since(start).Round(time.Millisecond))
	if now := s.settleAgent(t, base); now.fds > base.fds || now.goroutines > base.goroutines {
		t.Errorf("after the fork bomb: before %v; after %v", base, now)
	}
	if out := s.inspect(t, "find /host/cgroup -type d -name "+cid); strings.TrimSpace(out) != "" {
		t.Errorf("the fork bomb's cgroup is left: %q", out)
	}
}

// bootFaultSuite boots a VM of the test's own and creates the sandbox.
func bootFaultSuite(t *testing.T, extra ...vmm.Option) *suite {
	t.Helper()
	s := bootSuite(t, extra...)
	s.createSandbox(s.rpcCtx(t), t, nil)
	return s
}

// TestFaultMemoryHog: a container without a memory limit eats all the
// guest's memory. The kernel's OOM killer takes the container's process,
// never the agent (its oom_score_adj is -997, as upstream's unit sets),
// and the agent goes on serving: new containers and execs run.
func TestFaultMemoryHog(t *testing.T) {
	s := bootFaultSuite(t)
	if adj := strings.TrimSpace(s.inspect(t, "cat /host/proc/1/oom_score_adj")); adj != "-997" {
		t.Errorf("agent oom_score_adj %q, want -997", adj)
	}
	const cid = "hog"
	s.createContainer(t, cid, []string{"sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := s.cli.Agent.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: cid})
	check(t, "WaitProcess of the memory hog", err)
	if r.Status != 128+int32(syscall.SIGKILL) {
		t.Errorf("memory hog status %d, want %d (killed by the OOM killer)", r.Status, 128+int32(syscall.SIGKILL))
	}
	console := s.vm.ConsoleTail(64 << 10)
	if i := strings.LastIndex(console, "Out of memory: Killed process"); i >= 0 {
		t.Logf("console: %s", strings.SplitN(console[i:], "\n", 2)[0])
	}
	s.remove(t, cid)
	// The agent is the one that survived, and serves.
	if adj := strings.TrimSpace(s.inspect(t, "cat /host/proc/1/oom_score_adj; grep -E '^(Name|VmHWM|RssAnon)' /host/proc/1/status")); !strings.HasPrefix(adj, "-997") {
		t.Errorf("agent after the OOM: %q", adj)
	} else {
		t.Logf("agent after the OOM: %s", strings.Join(strings.Fields(adj), " "))
	}
	if out, st := s.exec(t, s.sleeperContainer(t), false, "echo", "alive"); st != 0 || out != "alive\n" {
		t.Errorf("exec after the OOM: %q, status %d", out, st)
	}
}

// TestFaultVirtiofsdKilled: virtiofsd dies while containers read and
// write the share. The containers' processes hang in the kernel on the
// dead share (uninterruptible: SIGKILL does not end them); RemoveContainer
// of such a container gives up after its timeout with a clear error
// instead of hanging; the agent keeps serving; a container whose rootfs
// is on a block device runs.
func TestFaultVirtiofsdKilled(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (install e2fsprogs): %v", tool, err)
		}
	}
	img := blockRootfsImage(t)
	s := bootFaultSuite(t, vmm.WithPCIeRootPort(blkRootPort, blkRootPortSlot), vmm.WithAppend("agent.hotplug_timeout=10"))

	s.createContainer(t, "writer", []string{"sh", "-c", "i=0; while :; do echo $i >> /data.txt; i=$((i+1)); done"})
	s.createContainer(t, "reader", []string{"sh", "-c", "while :; do cat /bin/busybox > /dev/null; ls -la / > /dev/null; done"})
	time.Sleep(2 * time.Second) // both are in the middle of their I/O
	pid := s.vm.VirtiofsdPid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill virtiofsd %d: %v", pid, err)
	}
	t.Logf("virtiofsd (pid %d) killed", pid)
	time.Sleep(3 * time.Second) // past the attribute cache: every loop is on the share

	hung := 0
	for _, cid := range []string{"reader", "writer"} {
		start := time.Now()
		_, err := s.cli.Agent.RemoveContainer(s.rpcCtx(t), &pb.RemoveContainerRequest{ContainerId: cid, Timeout: 5})
		took := time.Since(start)
		t.Logf("RemoveContainer %s on the dead share after %v: %v", cid, took.Round(time.Millisecond), err)
		switch {
		case err == nil:
			// Its process happened to be outside the file system.
		case status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), cid) || !strings.Contains(err.Error(), "in time"):
			t.Errorf("RemoveContainer %s = %v, want Unavailable naming the container and the timeout", cid, err)
		default:
			hung++ // its process ignores SIGKILL, in D state on the share
		}
		if took > 30*time.Second {
			t.Errorf("RemoveContainer %s with a 5 s timeout took %v", cid, took)
		}
		checkServing(t, s)
	}
	if hung == 0 {
		t.Errorf("no container hung on the dead share: the case was not exercised")
	}
	// Asking again gives the same answer, in the same time.
	start := time.Now()
	_, err := s.cli.Agent.RemoveContainer(s.rpcCtx(t), &pb.RemoveContainerRequest{ContainerId: "reader", Timeout: 2})
	if took := time.Since(start); err == nil && hung > 0 || took > 30*time.Second {
		t.Errorf("RemoveContainer reader again: %v after %v", err, took)
	}

	// A container whose rootfs is on the dead share fails within the
	// host's deadline, and holds nothing up for the others.
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, "late"), s.bb); err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
	start = time.Now()
	_, err = s.cli.Agent.CreateContainer(lctx, &pb.CreateContainerRequest{
		ContainerId: "late", ExecId: "late", OCI: fixture.Spec(sandboxID, "late", []string{"true"}),
	})
	lcancel()
	t.Logf("CreateContainer on the dead share after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err == nil {
		t.Errorf("CreateContainer on the dead share succeeded")
	}
	checkServing(t, s)

	// A container on other storage runs.
	const cid = "blkroot"
	mountPoint := guestpath.KataRoot + "/" + cid + "-blk"
	if err := s.vm.QMP().HotplugBlock(s.rpcCtx(t), "root1", img, blkRootPort, false); err != nil {
		t.Fatalf("QMP hot-plug: %v", err)
	}
	spec := fixture.Spec(sandboxID, cid, []string{"sh", "-c", "echo alive on a block rootfs"})
	spec.Root.Path = mountPoint
	ctx := s.rpcCtx(t)
	_, err = s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid, ExecId: cid, OCI: spec,
		Storages: []*pb.Storage{{Driver: "blk", Source: blkPCIPath, Fstype: "ext4", MountPoint: mountPoint}},
	})
	check(t, "CreateContainer on a block rootfs after the share died", err)
	_, err = s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
	check(t, "StartContainer", err)
	if out := s.readStdout(t, cid, cid); out != "alive on a block rootfs\n" {
		t.Errorf("block rootfs container stdout %q", out)
	}
	if st := s.wait(t, cid, cid); st != 0 {
		t.Errorf("block rootfs container status %d", st)
	}
	s.remove(t, cid)
	checkServing(t, s)
}

func checkServing(t *testing.T, s *suite) {
	t.Helper()
	r, err := s.cli.Health.Check(s.rpcCtx(t), &pb.CheckRequest{})
	check(t, "Check", err)
	if r.Status != pb.HealthCheckResponse_SERVING {
		t.Errorf("health %v", r.Status)
	}
	if _, err := s.cli.Agent.GetMetrics(s.rpcCtx(t), &pb.GetMetricsRequest{}); err != nil {
		t.Errorf("GetMetrics: %v", err)
	}
}

// blockRootfsImage writes an ext4 image holding a busybox rootfs.
func blockRootfsImage(t *testing.T) string {
	t.Helper()
	bb := os.Getenv("E2E_BUSYBOX")
	if bb == "" {
		bb = fixture.DefaultBusybox
	}
	src := filepath.Join(t.TempDir(), "rootfs")
	if err := fixture.BusyboxRootfs(src, bb); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "root.img")
	mkfsExt4Image(t, img, blkImageSize, "-d", src)
	return img
}

// TestFaultQEMUKilled: QEMU dies (SIGKILL). The kit notices, virtiofsd
// and the vsock backend end, and Close leaves no process of the VM and
// no file of it (sockets, logs, the work directory).
func TestFaultQEMUKilled(t *testing.T) {
	s := bootSuite(t)
	dir := s.vm.Dir()
	qemuPid, fsPid := s.vm.QEMUPid(), s.vm.VirtiofsdPid()
	vsockSock := s.vm.VsockSocket()
	if err := syscall.Kill(qemuPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill qemu %d: %v", qemuPid, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.vm.Wait(ctx); !errors.Is(err, vmm.ErrKilled) {
		t.Errorf("Wait after QEMU was killed = %v, want ErrKilled", err)
	}
	// A call in flight or made now ends at once, not after its timeout.
	start := time.Now()
	_, err := s.cli.Health.Check(s.rpcCtx(t), &pb.CheckRequest{})
	if err == nil {
		t.Errorf("Check answered after QEMU died")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Check after QEMU died took %v", took)
	}
	// virtiofsd leaves by itself once QEMU's end of its socket is gone.
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(fsPid, 0) == nil {
		if time.Now().After(deadline) {
			t.Errorf("virtiofsd (pid %d) still runs 20 s after QEMU died", fsPid)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	closed := time.Now()
	if err := s.vm.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	t.Logf("Close after QEMU died took %v", time.Since(closed).Round(time.Millisecond))
	for _, p := range []struct {
		name string
		pid  int
	}{{"qemu", qemuPid}, {"virtiofsd", fsPid}} {
		if err := syscall.Kill(-p.pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s process group %d still exists after Close (%v)", p.name, p.pid, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		t.Errorf("work directory %s left after Close (%v): %v", dir, err, entries)
	}
	if listening(t, vsockSock) {
		t.Errorf("the vsock backend still listens on %s", vsockSock)
	}
	if out, _ := exec.Command("pgrep", "-f", dir).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("processes naming %s after Close: %s", dir, out)
	}
}

// listening reports whether a Unix socket at path is listening.
func listening(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 8 && f[7] == path {
			return true
		}
	}
	return false
}
