package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/reaper"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/ocipb"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (a *agent) create(id string, spec *pb.Spec) {
	a.t.Helper()
	if _, err := a.cli.CreateContainer(ctxT(a.t, 30*time.Second), &pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: spec}); err != nil {
		a.t.Fatalf("CreateContainer %s: %v", id, err)
	}
}

func (a *agent) start(id string) {
	a.t.Helper()
	if _, err := a.cli.StartContainer(ctxT(a.t, 30*time.Second), &pb.StartContainerRequest{ContainerId: id}); err != nil {
		a.t.Fatalf("StartContainer %s: %v", id, err)
	}
}

func (a *agent) run(id string, spec *pb.Spec) {
	a.t.Helper()
	a.create(id, spec)
	a.start(id)
}

// readAll reads a stream until the zero-length reply that means EOF.
func (a *agent) readAll(ctx context.Context, cid, execID string, stderr bool) (string, error) {
	var b bytes.Buffer
	for {
		req := &pb.ReadStreamRequest{ContainerId: cid, ExecId: execID, Len: 32 << 10}
		var r *pb.ReadStreamResponse
		var err error
		if stderr {
			r, err = a.cli.ReadStderr(ctx, req)
		} else {
			r, err = a.cli.ReadStdout(ctx, req)
		}
		if err != nil {
			return b.String(), err
		}
		if len(r.Data) == 0 {
			return b.String(), nil
		}
		b.Write(r.Data)
	}
}

func (a *agent) wait(cid, execID string) int32 {
	a.t.Helper()
	r, err := a.cli.WaitProcess(ctxT(a.t, 60*time.Second), &pb.WaitProcessRequest{ContainerId: cid, ExecId: execID})
	if err != nil {
		a.t.Fatalf("WaitProcess %s/%s: %v", cid, execID, err)
	}
	return r.Status
}

func (a *agent) remove(id string) {
	a.t.Helper()
	if _, err := a.cli.RemoveContainer(ctxT(a.t, 60*time.Second), &pb.RemoveContainerRequest{ContainerId: id, Timeout: 30}); err != nil {
		a.t.Fatalf("RemoveContainer %s: %v", id, err)
	}
}

func (a *agent) exec(cid, execID string, tty bool, args ...string) {
	a.t.Helper()
	p := a.spec(tty, args...).Process
	if _, err := a.cli.ExecProcess(ctxT(a.t, 30*time.Second), &pb.ExecProcessRequest{ContainerId: cid, ExecId: execID, Process: p}); err != nil {
		a.t.Fatalf("ExecProcess %s/%s: %v", cid, execID, err)
	}
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v containing %q", code, substr)
	}
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), substr) {
		t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, substr)
	}
}

// TestOutputKeptAfterExit: output and exit code survive a process that
// exits before the host reads anything.
func TestOutputKeptAfterExit(t *testing.T) {
	a := startAgent(t)
	a.run("echo", a.spec(false, "/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"))
	if code := a.wait("echo", ""); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	ctx := ctxT(t, 10*time.Second)
	out, err := a.readAll(ctx, "echo", "", false)
	if err != nil || out != "hello\n" {
		t.Fatalf("stdout %q, %v; want hello", out, err)
	}
	errOut, err := a.readAll(ctx, "echo", "", true)
	if err != nil || errOut != "oops\n" {
		t.Fatalf("stderr %q, %v; want oops", errOut, err)
	}
	a.remove("echo")
}

var (
	agentctlOnce sync.Once
	agentctlBin  string
	agentctlErr  error
)

// agentctl builds the agentctl binary once per test binary.
func agentctl(t *testing.T) string {
	t.Helper()
	agentctlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sg-agentctl-")
		if err != nil {
			agentctlErr = err
			return
		}
		agentctlBin = filepath.Join(dir, "agentctl")
		build := exec.Command("go", "build", "-o", agentctlBin, "github.com/sandbox-guest/sandbox-guest/host/cmd/agentctl")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		var out bytes.Buffer
		build.Stdout, build.Stderr = &out, &out
		// Children of this process go through the reaper (see package reaper).
		if err := reaper.RunCmd(build); err != nil {
			agentctlErr = fmt.Errorf("build agentctl: %v\n%s", err, out.String())
		}
	})
	if agentctlErr != nil {
		t.Fatal(agentctlErr)
	}
	return agentctlBin
}

// ctl runs agentctl against the agent and returns its stdout and status.
func (a *agent) ctl(args ...string) (string, int) {
	a.t.Helper()
	stdout, _, code := runAgentctl(a.t, a.sock, args...)
	return stdout, code
}

// runAgentctl runs agentctl against the agent serving on the unix socket
// sock and returns its stdout, stderr and status.
func runAgentctl(t *testing.T, sock string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(agentctl(t), append([]string{"--addr", "unix://" + sock}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := reaper.RunCmd(cmd)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("agentctl %v: %v", args, err)
	}
	if code != 0 {
		t.Logf("agentctl %v: status %d, stderr %q", args, code, stderr.String())
	}
	return stdout.String(), stderr.String(), code
}

func TestAgentctlCommands(t *testing.T) {
	a := startAgent(t)
	if _, code := a.ctl("create-sandbox", "--id", "pod", "--hostname", "ctlhost", "--dns", "nameserver 10.1.1.1"); code != 0 {
		t.Fatal("create-sandbox failed")
	}
	a.run("svc", a.spec(false, "/bin/sleep", "1000"))
	if out, code := a.ctl("exec", "svc", "--", "/bin/sh", "-c", "hostname; exit 6"); code != 6 || out != "ctlhost\n" {
		t.Fatalf("exec: %q status %d, want ctlhost and 6", out, code)
	}
	if out, code := a.ctl("exec", "svc", "--tty", "--", "/bin/sh", "-c", "[ -t 0 ] && echo tty"); code != 0 || strings.TrimSpace(out) != "tty" {
		t.Fatalf("exec --tty: %q status %d", out, code)
	}
	if out, code := a.ctl("ps", "svc"); code != 0 || !strings.Contains(out, "sleep 1000") {
		t.Fatalf("ps: %q status %d", out, code)
	}
	if out, code := a.ctl("stats", "svc"); code != 0 || !strings.Contains(out, "memory.usage") || strings.Contains(out, "memory.usage\t0\n") {
		t.Fatalf("stats: %q status %d", out, code)
	}
	if _, code := a.ctl("pause", "svc"); code != 0 {
		t.Fatal("pause failed")
	}
	if _, code := a.ctl("resume", "svc"); code != 0 {
		t.Fatal("resume failed")
	}
	if _, code := a.ctl("kill", "svc", "KILL"); code != 0 {
		t.Fatal("kill failed")
	}
	if code := a.wait("svc", ""); code != 137 {
		t.Fatalf("after agentctl kill KILL: %d, want 137", code)
	}
	if _, code := a.ctl("rm", "svc"); code != 0 {
		t.Fatal("rm failed")
	}
	if _, code := a.ctl("rm", "svc"); code == 0 {
		t.Fatal("rm of a removed container succeeded")
	}
	if _, code := a.ctl("kill", "svc", "NOTASIGNAL"); code == 0 {
		t.Fatal("kill with a bad signal name succeeded")
	}
	if _, code := a.ctl("destroy-sandbox"); code != 0 {
		t.Fatal("destroy-sandbox failed")
	}
}

func TestAgentctlRunFlags(t *testing.T) {
	a := startAgent(t)
	out, code := a.ctl("run", "--rootfs", a.rootfs, "--tty", "--", "/bin/sh", "-c", "[ -t 1 ] && echo tty; exit 2")
	if code != 2 || !strings.Contains(out, "tty") {
		t.Fatalf("run --tty: %q status %d", out, code)
	}
	out, code = a.ctl("run", "--rootfs", a.rootfs, "--id", "kept", "--keep", "--env", "FOO=bar", "--cwd", "/tmp",
		"--memory", "67108864", "--", "/bin/sh", "-c", "echo $FOO; pwd")
	if code != 0 || out != "bar\n/tmp\n" {
		t.Fatalf("run with env and cwd: %q status %d", out, code)
	}
	out, code = a.ctl("stats", "kept")
	if code != 0 || !strings.Contains(out, "memory.limit\t64 MiB\n") {
		t.Fatalf("kept container stats: %q status %d", out, code)
	}
	if _, code := a.ctl("rm", "kept"); code != 0 {
		t.Fatal("rm kept failed")
	}
	if _, code := a.ctl("run", "--", "/bin/true"); code == 0 {
		t.Fatal("run without --rootfs succeeded")
	}
}

// TestAgentctlRun runs the agentctl binary against the agent.
func TestAgentctlRun(t *testing.T) {
	a := startAgent(t)
	bin := agentctl(t)
	cmd := exec.Command(bin, "--addr", "unix://"+a.sock, "run", "--rootfs", a.rootfs, "--", "/bin/sh", "-c", "echo hello; exit 3")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := reaper.RunCmd(cmd)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 3 {
		t.Fatalf("agentctl run: %v (stderr %q), want exit status 3", err, stderr.String())
	}
	if stdout.String() != "hello\n" {
		t.Fatalf("stdout %q, want hello", stdout.String())
	}
	// The container was removed: its id is free again.
	if ids := a.sbContainers(); len(ids) != 0 {
		t.Fatalf("containers left behind: %v", ids)
	}
}

func (a *agent) sbContainers() []string {
	var ids []string
	entries, _ := os.ReadDir(a.roots.State)
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	return ids
}

func TestExecWithAndWithoutTTY(t *testing.T) {
	a := startAgent(t)
	a.run("box", a.spec(false, "/bin/sleep", "1000"))
	ctx := ctxT(t, 20*time.Second)

	a.exec("box", "plain", false, "/bin/sh", "-c", "echo out; echo err >&2; [ -t 1 ] && echo tty || echo notty")
	out, err := a.readAll(ctx, "box", "plain", false)
	if err != nil || out != "out\nnotty\n" {
		t.Fatalf("plain exec stdout %q, %v", out, err)
	}
	if errOut, _ := a.readAll(ctx, "box", "plain", true); errOut != "err\n" {
		t.Fatalf("plain exec stderr %q", errOut)
	}
	if code := a.wait("box", "plain"); code != 0 {
		t.Fatalf("plain exec exit %d", code)
	}

	a.exec("box", "term", true, "/bin/sh", "-c", "[ -t 1 ] && echo tty || echo notty; exit 5")
	out, err = a.readAll(ctx, "box", "term", false)
	if err != nil || strings.TrimSpace(out) != "tty" {
		t.Fatalf("tty exec stdout %q, %v", out, err)
	}
	if code := a.wait("box", "term"); code != 5 {
		t.Fatalf("tty exec exit %d, want 5", code)
	}
	a.remove("box")
}

func TestStdinRoundTripThroughCat(t *testing.T) {
	a := startAgent(t)
	a.run("cat", a.spec(false, "/bin/cat"))
	ctx := ctxT(t, 20*time.Second)
	msg := []byte("round trip\n")
	r, err := a.cli.WriteStdin(ctx, &pb.WriteStreamRequest{ContainerId: "cat", Data: msg})
	if err != nil || r.Len != uint32(len(msg)) {
		t.Fatalf("WriteStdin: %v %v", r, err)
	}
	if _, err := a.cli.CloseStdin(ctx, &pb.CloseStdinRequest{ContainerId: "cat"}); err != nil {
		t.Fatal(err)
	}
	out, err := a.readAll(ctx, "cat", "", false)
	if err != nil || out != string(msg) {
		t.Fatalf("cat echoed %q, %v", out, err)
	}
	if code := a.wait("cat", ""); code != 0 {
		t.Fatalf("cat exit %d", code)
	}
	// Bad input: stdin is closed now.
	_, err = a.cli.WriteStdin(ctx, &pb.WriteStreamRequest{ContainerId: "cat", Data: msg})
	wantCode(t, err, codes.FailedPrecondition, "stdin is closed")
	a.remove("cat")
}

func TestWindowResize(t *testing.T) {
	a := startAgent(t)
	a.run("tty", a.spec(true, "/bin/sleep", "1000"))
	ctx := ctxT(t, 20*time.Second)
	a.exec("tty", "stty", true, "/bin/sh", "-c", "read x; stty size")
	if _, err := a.cli.TtyWinResize(ctx, &pb.TtyWinResizeRequest{ContainerId: "tty", ExecId: "stty", Row: 33, Column: 101}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.cli.WriteStdin(ctx, &pb.WriteStreamRequest{ContainerId: "tty", ExecId: "stty", Data: []byte("go\n")}); err != nil {
		t.Fatal(err)
	}
	out, err := a.readAll(ctx, "tty", "stty", false)
	if err != nil || !strings.Contains(out, "33 101") {
		t.Fatalf("stty size printed %q, %v; want 33 101", out, err)
	}
	a.wait("tty", "stty")
	a.remove("tty")
}

func TestSignals(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	// SIGTERM to a shell that traps it: exits with the trap's code.
	a.run("term", a.spec(false, "/bin/sh", "-c", "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"))
	r, err := a.cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "term", Len: 100})
	if err != nil || string(r.Data) != "ready\n" {
		t.Fatalf("ready line %q, %v", r.GetData(), err)
	}
	if _, err := a.cli.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: "term", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	if code := a.wait("term", ""); code != 42 {
		t.Fatalf("after SIGTERM exit %d, want 42", code)
	}
	a.remove("term")
	// SIGKILL: 128 + 9; exec id "" signals every process.
	a.run("kill", a.spec(false, "/bin/sleep", "1000"))
	a.exec("kill", "side", false, "/bin/sleep", "1000")
	if _, err := a.cli.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: "kill", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if code := a.wait("kill", ""); code != 137 {
		t.Fatalf("after SIGKILL exit %d, want 137", code)
	}
	if code := a.wait("kill", "side"); code != 137 {
		t.Fatalf("exec'd process after SIGKILL to all: exit %d, want 137", code)
	}
	// The runtime's stop sequence on a container that already ended.
	if _, err := a.cli.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: "kill", Signal: 9}); err != nil {
		t.Fatalf("SIGKILL to an exited container: %v", err)
	}
	a.remove("kill")
}

func TestPauseResume(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	a.run("count", a.spec(false, "/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done"))
	counter := func() string {
		id := fmt.Sprint("cat", time.Now().UnixNano())
		a.exec("count", id, false, "/bin/cat", "/tmp/n")
		out, _ := a.readAll(ctx, "count", id, false)
		a.wait("count", id)
		return strings.TrimSpace(out)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := a.cli.PauseContainer(ctx, &pb.PauseContainerRequest{ContainerId: "count"}); err != nil {
		t.Fatal(err)
	}
	// Exec into a frozen cgroup would freeze too: read the file from outside.
	before := readCounter(t, a, "count")
	time.Sleep(500 * time.Millisecond)
	if after := readCounter(t, a, "count"); after != before {
		t.Fatalf("counter moved while paused: %s -> %s", before, after)
	}
	if _, err := a.cli.ResumeContainer(ctx, &pb.ResumeContainerRequest{ContainerId: "count"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if after := counter(); after == before {
		t.Fatalf("counter did not move after resume: %s", after)
	}
	a.remove("count")
}

// readCounter reads /tmp/n of the container's init through /proc/PID/root.
func readCounter(t *testing.T, a *agent, id string) string {
	t.Helper()
	c, err := a.sb.Container(id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/n", c.InitPid()))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestStatsAndListProcesses(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	a.run("st", a.spec(false, "/bin/sleep", "1000"))
	r, err := a.cli.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: "st"})
	if err != nil {
		t.Fatal(err)
	}
	if u := r.GetCgroupStats().GetMemoryStats().GetUsage().GetUsage(); u == 0 {
		t.Fatalf("memory usage is zero: %v", r)
	}
	// The metrics collector's view: v2 paths relative to the mount; v1
	// hierarchies are not reported.
	paths := a.sb.CgroupPaths()
	if cgroups.IsCgroup2UnifiedMode() {
		if p := paths["st"]; !strings.HasSuffix(p, "/"+a.group+"/st") || !strings.HasPrefix(p, "/") {
			t.Fatalf("cgroup path %q, want /.../%s/st", p, a.group)
		}
	} else if len(paths) != 0 {
		t.Fatalf("cgroup v1 host reported v2 paths: %v", paths)
	}
	a.exec("st", "marker", false, "/bin/sleep", "4242")
	c, err := a.sb.Container("st")
	if err != nil {
		t.Fatal(err)
	}
	// The exec'd process runs its program shortly after ExecProcess returns.
	found := false
	var ps []container.ProcessInfo
	for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ps, err = c.ListProcesses("/proc"); err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Cmd == "/bin/sleep 4242" {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("exec'd process not listed: %+v", ps)
	}
	a.remove("st")
}

func TestOOMEvent(t *testing.T) {
	a := startAgent(t)
	spec := a.spec(false, "/bin/sh", "-c", "head -c 134217728 /dev/zero | tail -c 134217728 >/dev/null")
	spec.Linux.Resources.Memory = &pb.LinuxMemory{Limit: 32 << 20, Swap: 32 << 20}
	ctx := ctxT(t, 60*time.Second)
	events := make(chan string, 1)
	go func() {
		r, err := a.cli.GetOOMEvent(ctx, &pb.GetOOMEventRequest{})
		if err == nil {
			events <- r.ContainerId
		}
	}()
	a.run("hog", spec)
	code := a.wait("hog", "")
	if code != 137 {
		t.Errorf("exit code %d, want 137 (SIGKILL from the OOM killer)", code)
	}
	select {
	case id := <-events:
		if id != "hog" {
			t.Fatalf("OOM event for %q, want hog", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no OOM event (exit code %d)", code)
	}
	a.remove("hog")
}

func TestSharedUTSAndIPC(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	if _, err := a.cli.CreateSandbox(ctx, &pb.CreateSandboxRequest{SandboxId: "pod", Hostname: "podhost", Dns: []string{"nameserver 10.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, id := range []string{"one", "two"} {
		a.run(id, a.spec(false, "/bin/sh", "-c", "hostname; readlink /proc/self/ns/uts /proc/self/ns/ipc; cat /etc/resolv.conf"))
		out, err := a.readAll(ctx, id, "", false)
		if err != nil {
			t.Fatal(err)
		}
		a.wait(id, "")
		outs = append(outs, out)
	}
	if !strings.HasPrefix(outs[0], "podhost\n") || !strings.Contains(outs[0], "nameserver 10.0.0.1") {
		t.Fatalf("container output %q: want the sandbox hostname and DNS", outs[0])
	}
	if outs[0] != outs[1] {
		t.Fatalf("containers do not share uts/ipc: %q vs %q", outs[0], outs[1])
	}
	if _, err := a.cli.DestroySandbox(ctx, &pb.DestroySandboxRequest{}); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentCallsDoNotBlock: blocking reads and waits do not hold up
// other calls on the same connection.
func TestConcurrentCallsDoNotBlock(t *testing.T) {
	a := startAgent(t)
	a.run("slow", a.spec(false, "/bin/sleep", "1000"))
	ctx := ctxT(t, 30*time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = a.cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "slow", Len: 10})
		}()
		go func() { defer wg.Done(); _, _ = a.cli.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: "slow"}) }()
	}
	go func() { _, _ = a.cli.GetOOMEvent(ctx, &pb.GetOOMEventRequest{}) }()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if _, err := a.cli.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: "slow"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.cli.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: "slow", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("calls took %v behind blocked ones", d)
	}
	wg.Wait()
	a.remove("slow")
}

func TestBadInput(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 60*time.Second)
	create := func(id string, spec *pb.Spec) error {
		_, err := a.cli.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: spec})
		return err
	}
	good := func() *pb.Spec { return a.spec(false, "/bin/sleep", "1000") }
	for _, tc := range []struct {
		name, id, want string
	}{
		{"slash", "a/b", `contains "/"`},
		{"dotdot", "a..b", `contains ".."`},
		{"nul", "a\x00b", "contains NUL"},
		{"empty", "", "is empty"},
		{"long", strings.Repeat("x", 257), "longer than 256"},
	} {
		t.Run("id-"+tc.name, func(t *testing.T) {
			wantCode(t, create(tc.id, good()), codes.InvalidArgument, tc.want)
			_, err := a.cli.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: tc.id})
			wantCode(t, err, codes.InvalidArgument, tc.want)
		})
	}
	t.Run("spec-no-rootfs", func(t *testing.T) {
		s := good()
		s.Root = nil
		wantCode(t, create("noroot", s), codes.InvalidArgument, "no rootfs")
	})
	t.Run("spec-relative-rootfs", func(t *testing.T) {
		s := good()
		s.Root.Path = "rootfs"
		wantCode(t, create("relroot", s), codes.InvalidArgument, "not an absolute path")
	})
	t.Run("spec-missing-rootfs", func(t *testing.T) {
		s := good()
		s.Root.Path = "/nonexistent/rootfs"
		wantCode(t, create("missroot", s), codes.InvalidArgument, "no such file")
	})
	t.Run("spec-nil-process", func(t *testing.T) {
		s := good()
		s.Process = nil
		wantCode(t, create("noproc", s), codes.InvalidArgument, "no process")
	})
	t.Run("spec-nil", func(t *testing.T) {
		wantCode(t, create("nospec", nil), codes.InvalidArgument, "no OCI spec")
	})
	t.Run("duplicate-id", func(t *testing.T) {
		if err := create("dup", good()); err != nil {
			t.Fatal(err)
		}
		wantCode(t, create("dup", good()), codes.AlreadyExists, `"dup"`)
		t.Run("exec-before-start", func(t *testing.T) {
			_, err := a.cli.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: "dup", ExecId: "e", Process: good().Process})
			wantCode(t, err, codes.FailedPrecondition, "not started")
		})
		a.remove("dup")
	})
	t.Run("unknown-container", func(t *testing.T) {
		_, err := a.cli.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: "ghost"})
		wantCode(t, err, codes.NotFound, `"ghost"`)
		_, err = a.cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "ghost"})
		wantCode(t, err, codes.NotFound, `"ghost"`)
		_, err = a.cli.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: "ghost"})
		wantCode(t, err, codes.NotFound, `"ghost"`)
	})
	a.run("live", good())
	t.Run("unknown-exec", func(t *testing.T) {
		_, err := a.cli.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: "live", ExecId: "nope"})
		wantCode(t, err, codes.NotFound, `exec "nope"`)
		_, err = a.cli.WriteStdin(ctx, &pb.WriteStreamRequest{ContainerId: "live", ExecId: "nope", Data: []byte("x")})
		wantCode(t, err, codes.NotFound, `exec "nope"`)
	})
	t.Run("exec-bad-id", func(t *testing.T) {
		_, err := a.cli.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: "live", ExecId: "../x", Process: good().Process})
		wantCode(t, err, codes.InvalidArgument, `contains "/"`)
	})
	t.Run("exec-nil-process", func(t *testing.T) {
		_, err := a.cli.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: "live", ExecId: "x"})
		wantCode(t, err, codes.InvalidArgument, "no process")
	})
	t.Run("signal-out-of-range", func(t *testing.T) {
		for _, sig := range []uint32{65, 1 << 31} { // 0 is valid: a liveness check
			_, err := a.cli.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: "live", Signal: sig})
			wantCode(t, err, codes.InvalidArgument, "out of range")
		}
	})
	t.Run("exec-duplicate-id", func(t *testing.T) {
		a.exec("live", "twice", false, "/bin/sleep", "1000")
		_, err := a.cli.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: "live", ExecId: "twice", Process: good().Process})
		wantCode(t, err, codes.AlreadyExists, `exec "twice"`)
	})
	t.Run("resize-without-tty", func(t *testing.T) {
		_, err := a.cli.TtyWinResize(ctx, &pb.TtyWinResizeRequest{ContainerId: "live", Row: 10, Column: 10})
		wantCode(t, err, codes.FailedPrecondition, "has no terminal")
	})
	t.Run("resume-not-paused", func(t *testing.T) {
		_, err := a.cli.ResumeContainer(ctx, &pb.ResumeContainerRequest{ContainerId: "live"})
		wantCode(t, err, codes.FailedPrecondition, "not paused")
	})
	t.Run("spec-invalid-for-libcontainer", func(t *testing.T) {
		s := good()
		s.Linux.Namespaces = append(s.Linux.Namespaces, &pb.LinuxNamespace{Type: "bogus"})
		wantCode(t, create("badns", s), codes.InvalidArgument, "bogus")
		s = good()
		s.Linux.Sysctl = map[string]string{"vm.swappiness": "0"}
		wantCode(t, create("badsysctl", s), codes.InvalidArgument, "vm.swappiness")
	})
	t.Run("stdin-closed", func(t *testing.T) {
		if _, err := a.cli.CloseStdin(ctx, &pb.CloseStdinRequest{ContainerId: "live"}); err != nil {
			t.Fatal(err)
		}
		_, err := a.cli.WriteStdin(ctx, &pb.WriteStreamRequest{ContainerId: "live", Data: []byte("x")})
		wantCode(t, err, codes.FailedPrecondition, "stdin is closed")
	})
	// The agent keeps serving after all of that.
	if _, err := a.cli.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: "live"}); err != nil {
		t.Fatalf("agent no longer serving: %v", err)
	}
	a.remove("live")
}

// TestLifecycleLeaks: 200 create/start/wait/remove cycles leave fds,
// goroutines, mounts and cgroups as they were.
func TestLifecycleLeaks(t *testing.T) {
	a := startAgent(t)
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	cycle := func(i int) {
		id := fmt.Sprintf("c%d", i)
		a.run(id, a.spec(false, "/bin/sh", "-c", "echo hi"))
		if i < 0 && countCgroups(a.group) == 0 {
			t.Fatal("no container cgroup found while a container exists: the cgroup check would prove nothing")
		}
		out, err := a.readAll(ctxT(t, 20*time.Second), id, "", false)
		if err != nil || out != "hi\n" {
			t.Fatalf("cycle %d output %q, %v", i, out, err)
		}
		if code := a.wait(id, ""); code != 0 {
			t.Fatalf("cycle %d exit %d", i, code)
		}
		a.remove(id)
	}
	cycle(-1) // warm up lazily created state (cgroup group, epoll, ...)
	time.Sleep(100 * time.Millisecond)
	fds0, gr0, mnt0, cg0 := countFDs(t), runtime.NumGoroutine(), countMounts(t), countCgroups(a.group)
	start := time.Now()
	for i := 0; i < cycles; i++ {
		cycle(i)
	}
	elapsed := time.Since(start)
	// Goroutines end asynchronously after a wait; give them a moment.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > gr0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	fds1, gr1, mnt1, cg1 := countFDs(t), runtime.NumGoroutine(), countMounts(t), countCgroups(a.group)
	t.Logf("%d cycles in %v (%v each); fds %d->%d goroutines %d->%d mounts %d->%d cgroups %d->%d",
		cycles, elapsed, elapsed/time.Duration(cycles), fds0, fds1, gr0, gr1, mnt0, mnt1, cg0, cg1)
	if fds1 != fds0 || gr1 > gr0 || mnt1 != mnt0 || cg1 != cg0 {
		t.Fatalf("leak after %d cycles: fds %d->%d goroutines %d->%d mounts %d->%d cgroups %d->%d",
			cycles, fds0, fds1, gr0, gr1, mnt0, mnt1, cg0, cg1)
	}
	// Orphans are reaped after the reaper's grace period.
	z := zombies(t)
	for deadline := time.Now().Add(2 * time.Second); len(z) > 0 && time.Now().Before(deadline); z = zombies(t) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(z) > 0 {
		t.Fatalf("zombie children left: %v", z)
	}
}

func countFDs(t *testing.T) int {
	e, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(e)
}

func countMounts(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte{'\n'})
}

// countCgroups counts the container cgroups below the test's cgroup group
// (in every hierarchy); the group directories themselves stay.
func countCgroups(group string) int {
	n := 0
	for _, d := range cgroupGroupDirs(group) {
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() && p != d {
				n++
			}
			return nil
		})
	}
	return n
}

func zombies(t *testing.T) []string {
	self := fmt.Sprint(os.Getpid())
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[0] == "Z" && f[1] == self {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestTerminalInitOutputAfterExit(t *testing.T) {
	a := startAgent(t)
	a.run("tinit", a.spec(true, "/bin/sh", "-c", "echo hello from a tty; exit 4"))
	if code := a.wait("tinit", ""); code != 4 {
		t.Fatalf("exit %d, want 4", code)
	}
	out, err := a.readAll(ctxT(t, 10*time.Second), "tinit", "", false)
	if err != nil || !strings.Contains(out, "hello from a tty") {
		t.Fatalf("tty output %q, %v", out, err)
	}
	if errOut, err := a.readAll(ctxT(t, 10*time.Second), "tinit", "", true); err != nil || errOut != "" {
		t.Fatalf("tty stderr %q, %v; want immediate EOF", errOut, err)
	}
	a.remove("tinit")
}

func TestUpdateContainer(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	a.run("upd", a.spec(false, "/bin/sleep", "1000"))
	const limit = 48 << 20
	if _, err := a.cli.UpdateContainer(ctx, &pb.UpdateContainerRequest{ContainerId: "upd",
		Resources: &pb.LinuxResources{Memory: &pb.LinuxMemory{Limit: limit}}}); err != nil {
		t.Fatal(err)
	}
	r, err := a.cli.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: "upd"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.GetCgroupStats().GetMemoryStats().GetUsage().GetLimit(); got != limit {
		t.Fatalf("memory limit %d after update, want %d", got, limit)
	}
	_, err = a.cli.UpdateContainer(ctx, &pb.UpdateContainerRequest{ContainerId: "upd"})
	wantCode(t, err, codes.InvalidArgument, "no resources")
	a.remove("upd")
}

func TestSandboxPidNamespace(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	if _, err := a.cli.CreateSandbox(ctx, &pb.CreateSandboxRequest{SandboxId: "pod", SandboxPidns: true}); err != nil {
		t.Fatal(err)
	}
	create := func(id string, args ...string) {
		if _, err := a.cli.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: a.spec(false, args...), SandboxPidns: true}); err != nil {
			t.Fatal(err)
		}
		a.start(id)
	}
	create("pause", "/bin/sleep", "4343")
	create("app", "/bin/sh", "-c", "ps -o pid,args")
	out, err := a.readAll(ctx, "app", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "sleep 4343") {
		t.Fatalf("second container does not see the first's process:\n%s", out)
	}
	a.wait("app", "")
	if _, err := a.cli.DestroySandbox(ctx, &pb.DestroySandboxRequest{}); err != nil {
		t.Fatal(err)
	}
}

// TestSeccomp: a seccomp profile in the spec is enforced (agent built with
// the seccomp tag) or the container is refused, never run unfiltered.
func TestSeccomp(t *testing.T) {
	a := startAgent(t)
	spec := a.spec(false, "/bin/sh", "-c", "mkdir /tmp/blocked && echo made || echo refused")
	spec.Linux.Seccomp = &pb.LinuxSeccomp{
		DefaultAction: "SCMP_ACT_ALLOW",
		Syscalls:      []*pb.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: &pb.LinuxSyscall_Errnoret{Errnoret: 1}}},
	}
	_, err := a.cli.CreateContainer(ctxT(t, 30*time.Second), &pb.CreateContainerRequest{ContainerId: "sec", ExecId: "sec", OCI: spec})
	if !seccompBuilt {
		if err == nil || !strings.Contains(err.Error(), "seccomp") {
			t.Fatalf("without seccomp support: %v, want the container refused naming seccomp", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	a.start("sec")
	out, err := a.readAll(ctxT(t, 10*time.Second), "sec", "", false)
	if err != nil || strings.TrimSpace(out) != "refused" {
		t.Fatalf("mkdir under seccomp: %q, %v; want refused", out, err)
	}
	a.wait("sec", "")
	a.remove("sec")
}

// TestFailedStartLeavesNothing: a container whose program does not exist
// fails with an error naming it, and leaves no descriptors, cgroups or
// state behind.
func TestFailedStartLeavesNothing(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	// Warm up the libraries' lazily opened handles (cgroup root, procfs).
	a.run("warm", a.spec(false, "/bin/true"))
	a.wait("warm", "")
	a.remove("warm")
	fds0, cg0 := countFDs(t), countCgroups(a.group)
	before := fdTargets()
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("bad%d", i)
		_, err := a.cli.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: a.spec(false, "/bin/does-not-exist")})
		if err == nil || !strings.Contains(err.Error(), "/bin/does-not-exist") {
			t.Fatalf("create with a missing program: %v, want an error naming it", err)
		}
		// The id is free again.
		_, err = a.cli.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: id})
		wantCode(t, err, codes.NotFound, id)
	}
	deadline := time.Now().Add(3 * time.Second)
	for countFDs(t) != fds0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if fds1, cg1 := countFDs(t), countCgroups(a.group); fds1 != fds0 || cg1 != cg0 {
		t.Fatalf("failed creates leaked: fds %d->%d (%v -> %v) cgroups %d->%d", fds0, fds1, before, fdTargets(), cg0, cg1)
	}
	if ids := a.sbContainers(); len(ids) != 0 {
		t.Fatalf("state left behind: %v", ids)
	}
}

func threads(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			var n int
			fmt.Sscan(strings.TrimSpace(v), &n)
			return n
		}
	}
	return 0
}

// TestLiveProcessesCostNoThreads: waiting for many live processes parks
// goroutines, not OS threads (Go never gives threads back).
func TestLiveProcessesCostNoThreads(t *testing.T) {
	a := startAgent(t)
	a.run("warm", a.spec(false, "/bin/sleep", "1000"))
	th0 := threads(t)
	const n = 12
	for i := 0; i < n; i++ {
		a.run(fmt.Sprintf("live%d", i), a.spec(false, "/bin/sleep", "1000"))
	}
	time.Sleep(200 * time.Millisecond)
	th1 := threads(t)
	t.Logf("threads with 1 live container: %d, with %d more: %d", th0, n, th1)
	if th1-th0 >= n/2 {
		t.Fatalf("threads grew from %d to %d with %d more live containers", th0, th1, n)
	}
	for i := 0; i < n; i++ {
		a.remove(fmt.Sprintf("live%d", i))
	}
	a.remove("warm")
}

// TestRemoveHonoursTimeout: when the processes cannot die (their cgroup's
// parent is frozen, which the v1 freezer holds even SIGKILL for), the
// remove gives up after its timeout with an error, and a later remove
// succeeds once they can.
func TestRemoveHonoursTimeout(t *testing.T) {
	a := startAgent(t)
	a.run("stuck", a.spec(false, "/bin/sleep", "1000"))
	var freezer string
	for _, d := range cgroupGroupDirs(a.group) {
		if strings.Contains(d, "/freezer/") {
			freezer = filepath.Join(d, "freezer.state")
		}
	}
	if freezer == "" {
		t.Skip("no cgroup v1 freezer: the v2 freezer lets SIGKILL through, so processes cannot be held")
	}
	if err := os.WriteFile(freezer, []byte("FROZEN"), 0o644); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if err := os.WriteFile(freezer, []byte("THAWED"), 0o644); err != nil {
				t.Error(err)
			}
		}
	}
	defer thaw()
	start := time.Now()
	_, err := a.cli.RemoveContainer(ctxT(t, 30*time.Second), &pb.RemoveContainerRequest{ContainerId: "stuck", Timeout: 1})
	took := time.Since(start)
	wantCode(t, err, codes.Unavailable, "did not exit in time")
	if took < time.Second || took > 5*time.Second {
		t.Fatalf("remove with a 1 s timeout took %v", took)
	}
	thaw()
	a.remove("stuck")
}

func fdTargets() []string {
	var out []string
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	return out
}

// TestParallelLifecycles: lifecycles on one connection at once, each with
// its own output, exit code and exec, and nothing left behind.
func TestParallelLifecycles(t *testing.T) {
	a := startAgent(t)
	const workers, rounds = 6, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for r := 0; r < rounds; r++ {
				id := fmt.Sprintf("p%d-%d", w, r)
				spec := a.spec(false, "/bin/sh", "-c", fmt.Sprintf("read x; echo %s:$x; exit %d", id, w+r))
				if _, err := a.cli.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: spec}); err != nil {
					errs <- err
					return
				}
				if _, err := a.cli.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: id}); err != nil {
					errs <- err
					return
				}
				if _, err := a.cli.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: id, ExecId: "e", Process: a.spec(false, "/bin/true").Process}); err != nil {
					errs <- err
					return
				}
				if _, err := a.cli.WriteStdin(ctx, &pb.WriteStreamRequest{ContainerId: id, Data: []byte("in\n")}); err != nil {
					errs <- err
					return
				}
				out, err := a.readAll(ctx, id, "", false)
				if err != nil || out != id+":in\n" {
					errs <- fmt.Errorf("%s: output %q, %v", id, out, err)
					return
				}
				wr, err := a.cli.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: id})
				if err != nil || wr.Status != int32(w+r) {
					errs <- fmt.Errorf("%s: wait %v, %v; want %d", id, wr, err, w+r)
					return
				}
				if _, err := a.cli.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: id, ExecId: "e"}); err != nil {
					errs <- fmt.Errorf("%s: wait exec: %v", id, err)
					return
				}
				if _, err := a.cli.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: id}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := countCgroups(a.group); n != 0 {
		t.Fatalf("%d container cgroups left", n)
	}
	if ids := a.sbContainers(); len(ids) != 0 {
		t.Fatalf("state left: %v", ids)
	}
}

// TestDevice: a device of CreateContainer is resolved by the agent's
// device resolver (here an mmio block device announced in the agent's own
// sysfs, whose node is a stand-in for /dev/null), appears at its container
// path with the guest's numbers, and the device cgroup lets the container
// use it.
func TestDevice(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, 30*time.Second)
	if err := os.MkdirAll(filepath.Join(a.roots.Sysfs, "class/block/vdq"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(a.roots.Dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(a.roots.Dev, "vdq"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	s := defaultSpec(a.rootfs, []string{"/bin/sh", "-c", "echo x > /dev/sink && echo wrote; ls -l /dev/sink | cut -c1"}, false)
	// The runtime names the device by its host numbers.
	major, minor := int64(254), int64(9)
	s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/sink", Type: "b", Major: major, Minor: minor})
	s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: &major, Minor: &minor, Access: "rwm"})
	spec := ocipb.FromSpec(s)
	_, err := a.cli.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "dev", ExecId: "dev", OCI: spec,
		Devices: []*pb.Device{{Type: "mmioblk", VmPath: "/dev/vdq", ContainerPath: "/dev/sink"}}})
	if err != nil {
		t.Fatal(err)
	}
	a.start("dev")
	out, err := a.readAll(ctx, "dev", "", false)
	if err != nil || out != "wrote\nc\n" {
		t.Fatalf("device use: %q, %v", out, err)
	}
	a.wait("dev", "")
	a.remove("dev")
	_, err = a.cli.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "nodev", ExecId: "nodev", OCI: spec,
		Devices: []*pb.Device{{Type: "mmioblk", VmPath: "/dev/ghost", ContainerPath: "/dev/sink"}}})
	wantCode(t, err, codes.DeadlineExceeded, "ghost")
}

func TestHotplugCpusetFollowsOnlineCPUs(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs to tell a widened cpuset from a pinned one")
	}
	a := startAgent(t)
	ctx := ctxT(t, 60*time.Second)
	a.run("free", a.spec(false, "/bin/sleep", "1000"))
	pinned := a.spec(false, "/bin/sleep", "1000")
	if pinned.Linux.Resources == nil {
		pinned.Linux.Resources = &pb.LinuxResources{}
	}
	pinned.Linux.Resources.CPU = &pb.LinuxCPU{Cpus: "1"}
	a.run("pinned", pinned)

	allowed := func(cid, execID string) string {
		a.exec(cid, execID, false, "/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status")
		out, err := a.readAll(ctx, cid, execID, false)
		if err != nil {
			t.Fatal(err)
		}
		a.wait(cid, execID)
		return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "Cpus_allowed_list:"))
	}
	if err := a.sb.UpdateCpusets("0"); err != nil {
		t.Fatal(err)
	}
	if got := allowed("free", "e1"); got != "0" {
		t.Errorf("unpinned container allowed CPUs %q after UpdateCpusets(0), want 0", got)
	}
	if got := allowed("pinned", "e2"); got != "1" {
		t.Errorf("pinned container allowed CPUs %q, want its own 1", got)
	}
	if err := a.sb.UpdateCpusets("0-1"); err != nil {
		t.Fatal(err)
	}
	if got := allowed("free", "e3"); got != "0-1" {
		t.Errorf("unpinned container allowed CPUs %q after UpdateCpusets(0-1), want 0-1", got)
	}
	a.remove("free")
	a.remove("pinned")
}
