package integration

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/wiring"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// The soak runs execs and containers the way hosts drive them (every
// stream read, only some, none; with and without a terminal) and checks
// that the agent's descriptors, goroutines and anonymous memory come back
// to their level. The short variant runs in `make test`;
// SANDBOX_SOAK=<n> runs n of each kind instead (the long variant).

// soakCount is how many execs (and a tenth as many containers) of each
// kind run.
func soakCount(t *testing.T) int {
	n := 30
	if testing.Short() {
		n = 10
	}
	if v := os.Getenv("SANDBOX_SOAK"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("SANDBOX_SOAK=%q: want a positive count", v)
		}
	}
	return n
}

// Tolerances. Descriptors and goroutines must come back exactly: every
// one left is a leak that grows with the count. Anonymous memory moves
// with the Go heap of the whole test binary (client, server, test), so it
// gets a margin that is small next to what each leaked exec used to cost
// (tens of KiB, megabytes per hundred).
const soakAnonSlack = 2 << 20

// settleTime bounds how long the agent may take to release what finished
// processes held: the release grace after a wait plus scheduling slack.
const settleTime = 20 * time.Second

type footprint struct {
	fds, goroutines int
	anon            uint64 // RssAnon, bytes
	threads         int    // for the log: thread stacks count in RssAnon
}

func (f footprint) String() string {
	return fmt.Sprintf("fds %d, goroutines %d, RssAnon %d KiB, threads %d", f.fds, f.goroutines, f.anon>>10, f.threads)
}

func measureSelf(t *testing.T) footprint {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	return footprint{fds: countFDs(t), goroutines: runtime.NumGoroutine(), anon: rssAnon(t), threads: threads(t)}
}

func rssAnon(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("RssAnon line %q: %v", l, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no RssAnon in /proc/self/status")
	return 0
}

// quiesce waits until descriptors and goroutines have not changed for
// longer than the release grace period, so that processes finished
// before (warm-up) are released, and returns the footprint then: the
// baseline.
func quiesce(t *testing.T) footprint {
	t.Helper()
	window := container.DefaultReleaseGrace + time.Second
	deadline := time.Now().Add(settleTime)
	last, since := footprint{fds: -1}, time.Now()
	for time.Now().Before(deadline) {
		f := footprint{fds: countFDs(t), goroutines: runtime.NumGoroutine()}
		if f != last {
			last, since = f, time.Now()
		} else if time.Since(since) > window {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return measureSelf(t)
}

// settle waits until descriptors and goroutines are back to base (or the
// settle time passed) and returns the footprint then.
func settle(t *testing.T, base footprint) footprint {
	t.Helper()
	deadline := time.Now().Add(settleTime)
	for {
		f := footprint{fds: countFDs(t), goroutines: runtime.NumGoroutine()}
		if (f.fds <= base.fds && f.goroutines <= base.goroutines) || time.Now().After(deadline) {
			return measureSelf(t)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func checkFootprint(t *testing.T, what string, base, now footprint) {
	t.Helper()
	t.Logf("%s: before %v; after %v", what, base, now)
	// Under -race RssAnon is the race detector's shadow memory as much as
	// the agent's (run alone, this test grew it by 9 MiB before any change
	// of this session): it is bounded only without -race (`make soak`) and
	// in the guest (TestE2E/ExecReleaseSoak, SoakCycles).
	grew := now.anon > base.anon+soakAnonSlack && !raceBuild
	if now.fds > base.fds || now.goroutines > base.goroutines || grew {
		t.Errorf("%s left resources behind: before %v; after %v (RssAnon slack %d KiB)",
			what, base, now, soakAnonSlack>>10)
	}
}

// execKind is one way a host drives an exec.
type execKind struct {
	name             string
	tty              bool
	readOut, readErr bool
	skipWait         bool
}

var soakExecKinds = []execKind{
	{name: "stdout-only", readOut: true}, // the runtime with stderr not attached
	{name: "no-reads"},                   // a detached exec
	{name: "both-streams", readOut: true, readErr: true},
	{name: "stderr-only", readErr: true},
	{name: "tty", tty: true, readOut: true},
	{name: "tty-no-reads", tty: true},
}

// The helpers below use a context per call, not ctxT: ctxT keeps every
// context until the test ends, which the soak would count as growth.

// rpc runs f with a fresh 30 s context.
func rpc(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f(ctx); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (a *agent) soakWait(t *testing.T, cid, execID string) {
	t.Helper()
	rpc(t, "WaitProcess "+cid+"/"+execID, func(ctx context.Context) error {
		r, err := a.cli.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: execID})
		if err == nil && r.Status != 0 {
			err = fmt.Errorf("status %d, want 0", r.Status)
		}
		return err
	})
}

func (a *agent) soakRead(t *testing.T, cid, execID string, stderr bool, want string) {
	t.Helper()
	rpc(t, fmt.Sprintf("read %s/%s (stderr %v)", cid, execID, stderr), func(ctx context.Context) error {
		out, err := a.readAll(ctx, cid, execID, stderr)
		if err == nil && !strings.Contains(out, want) {
			err = fmt.Errorf("output %q, want %q in it", out, want)
		}
		return err
	})
}

// runExec runs one exec of kind k in container cid.
func (a *agent) runExec(t *testing.T, cid, id string, k execKind) {
	t.Helper()
	p := a.spec(k.tty, "/bin/sh", "-c", "echo out; echo err >&2").Process
	rpc(t, "ExecProcess "+id, func(ctx context.Context) error {
		_, err := a.cli.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: cid, ExecId: id, Process: p})
		return err
	})
	if k.readOut {
		a.soakRead(t, cid, id, false, "out")
	}
	if k.readErr {
		want := "err"
		if k.tty {
			want = "" // a terminal has no separate stderr
		}
		a.soakRead(t, cid, id, true, want)
	}
	if !k.skipWait {
		a.soakWait(t, cid, id)
	}
}

// containerKind is one way a host drives a container's init.
type containerKind struct {
	name             string
	tty              bool
	readOut, readErr bool
}

var soakContainerKinds = []containerKind{
	{name: "both-streams", readOut: true, readErr: true},
	{name: "stdout-only", readOut: true},
	{name: "no-reads"},
	{name: "tty", tty: true, readOut: true},
}

func (a *agent) runContainer(t *testing.T, id string, k containerKind) {
	t.Helper()
	spec := a.spec(k.tty, "/bin/sh", "-c", "echo out; echo err >&2")
	rpc(t, "create and start "+id, func(ctx context.Context) error {
		if _, err := a.cli.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: spec}); err != nil {
			return err
		}
		_, err := a.cli.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: id})
		return err
	})
	if k.readOut {
		a.soakRead(t, id, "", false, "out")
	}
	if k.readErr {
		a.soakRead(t, id, "", true, "err")
	}
	a.soakWait(t, id, "")
	rpc(t, "RemoveContainer "+id, func(ctx context.Context) error {
		_, err := a.cli.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: id, Timeout: 30})
		return err
	})
}

// TestSoakExecsAndContainers: after many execs and containers, driven
// every way the runtime does, the agent holds what it held before.
func TestSoakExecsAndContainers(t *testing.T) {
	a := startAgent(t)
	n := soakCount(t)
	a.run("soak", a.spec(false, "/bin/sleep", "100000"))
	// Warm up lazily created state (epoll, cgroup group, pools).
	for _, k := range soakExecKinds {
		a.runExec(t, "soak", "warm-"+k.name, k)
	}
	for _, k := range soakContainerKinds {
		a.runContainer(t, "warm-"+k.name, k)
	}
	base := quiesce(t)
	start := time.Now()
	for _, k := range soakExecKinds {
		for i := 0; i < n; i++ {
			a.runExec(t, "soak", fmt.Sprintf("%s-%d", k.name, i), k)
		}
	}
	t.Logf("%d execs in %v", n*len(soakExecKinds), time.Since(start))
	checkFootprint(t, fmt.Sprintf("%d execs of each of %d kinds", n, len(soakExecKinds)), base, settle(t, base))

	start = time.Now()
	nc := max(n/10, 2)
	for _, k := range soakContainerKinds {
		for i := 0; i < nc; i++ {
			a.runContainer(t, fmt.Sprintf("c-%s-%d", k.name, i), k)
		}
	}
	t.Logf("%d containers in %v", nc*len(soakContainerKinds), time.Since(start))
	checkFootprint(t, fmt.Sprintf("%d containers of each of %d kinds", nc, len(soakContainerKinds)), base, settle(t, base))
	a.remove("soak")
}

// TestExecReleasedAfterWaitWithoutReads: an exec whose status was waited
// for is forgotten after the grace period even though one of its streams
// was never read, as the upstream agent forgets it at once; a later call
// for it is NotFound.
func TestExecReleasedAfterWaitWithoutReads(t *testing.T) {
	a := startAgent(t)
	a.run("box", a.spec(false, "/bin/sleep", "100000"))
	a.runExec(t, "box", "warm", execKind{readOut: true})
	base := quiesce(t)
	a.runExec(t, "box", "e1", execKind{readOut: true})
	now := settle(t, base)
	if now.fds > base.fds {
		t.Fatalf("a waited exec whose stderr was never read still holds %d descriptors", now.fds-base.fds)
	}
	_, err := a.cli.ReadStderr(ctxT(t, 10*time.Second), &pb.ReadStreamRequest{ContainerId: "box", ExecId: "e1", Len: 100})
	wantCode(t, err, codes.NotFound, `exec "e1"`)
	a.remove("box")
}

// TestExecNeverWaitedHoldsNoDescriptors: an exec that exited and whose
// output was read to the end holds no descriptors while the host has not
// yet asked for its status, and the status is still there when it does.
func TestExecNeverWaitedHoldsNoDescriptors(t *testing.T) {
	a := startAgent(t)
	a.run("box", a.spec(false, "/bin/sleep", "100000"))
	a.runExec(t, "box", "warm", execKind{readOut: true, readErr: true})
	base := quiesce(t)
	const n = 20
	for i := 0; i < n; i++ {
		a.runExec(t, "box", fmt.Sprintf("nw%d", i), execKind{readOut: true, readErr: true, skipWait: true})
	}
	now := settle(t, base)
	if now.fds > base.fds {
		t.Fatalf("%d exited, drained, never-waited execs hold %d descriptors", n, now.fds-base.fds)
	}
	for i := 0; i < n; i++ {
		if code := a.wait("box", fmt.Sprintf("nw%d", i)); code != 0 {
			t.Fatalf("exec nw%d status %d, want 0", i, code)
		}
	}
	a.remove("box")
}

// TestExecBackgroundChildDoesNotHoldStreams: an exec that leaves a child
// running with its stdout and stderr ends its streams shortly after it
// exits, as upstream does; otherwise the runtime, which waits for EOF
// before it asks for the status, would hang (kubectl exec -- sh -c 'd &').
func TestExecBackgroundChildDoesNotHoldStreams(t *testing.T) {
	a := startAgent(t)
	a.run("box", a.spec(false, "/bin/sleep", "100000"))
	a.exec("box", "bg", false, "/bin/sh", "-c", "sleep 60 & echo started")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	out, err := a.readAll(ctx, "box", "bg", false)
	if err != nil || out != "started\n" {
		t.Fatalf("stdout %q, %v (after %v)", out, err, time.Since(start))
	}
	if errOut, err := a.readAll(ctx, "box", "bg", true); err != nil || errOut != "" {
		t.Fatalf("stderr %q, %v", errOut, err)
	}
	t.Logf("both streams at EOF %v after the start", time.Since(start))
	if code := a.wait("box", "bg"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	a.remove("box")
}

// TestExecBudget: the sandbox holds a bounded number of execs at once,
// over all its containers; beyond it ExecProcess is ResourceExhausted,
// and an exec whose status was collected makes room again.
func TestExecBudget(t *testing.T) {
	a := startAgent(t, wiring.WithExecPolicy(container.ExecPolicy{Budget: container.NewExecBudget(3)}))
	a.run("b1", a.spec(false, "/bin/sleep", "100000"))
	a.run("b2", a.spec(false, "/bin/sleep", "100000"))
	a.exec("b1", "s1", false, "/bin/sleep", "100000")
	a.exec("b1", "s2", false, "/bin/sleep", "100000")
	a.exec("b2", "s3", false, "/bin/sleep", "100000")
	for _, cid := range []string{"b1", "b2"} {
		_, err := a.cli.ExecProcess(ctxT(t, 30*time.Second), &pb.ExecProcessRequest{
			ContainerId: cid, ExecId: "over", Process: a.spec(false, "/bin/true").Process,
		})
		wantCode(t, err, codes.ResourceExhausted, "the limit")
	}
	if _, err := a.cli.SignalProcess(ctxT(t, 30*time.Second), &pb.SignalProcessRequest{ContainerId: "b1", ExecId: "s1", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if code := a.wait("b1", "s1"); code != 128+9 {
		t.Fatalf("killed exec status %d", code)
	}
	// Released within the grace period after the wait (nothing was read).
	deadline := time.Now().Add(settleTime)
	for {
		_, err := a.cli.ExecProcess(ctxT(t, 30*time.Second), &pb.ExecProcessRequest{
			ContainerId: "b2", ExecId: "again", Process: a.spec(false, "/bin/true").Process,
		})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room for an exec after one was waited for: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.remove("b1")
	a.remove("b2")
}
