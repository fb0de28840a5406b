//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// The soak in the guest: execs and containers driven the ways the runtime
// drives them (every stream read, only stdout, none, a terminal) must not
// leave descriptors, goroutines or anonymous memory behind in the agent.
// The agent's own figures come from GetMetrics (it reads its
// /proc/self/status and /proc/self/fd). Each phase runs two rounds of n
// execs of each kind (E2E_SOAK=<n>, default 10), then two rounds of n/5
// containers of each kind.

func init() {
	registerSharedGuestTest("ExecReleaseSoak", (*suite).testExecReleaseSoak)
	registerSharedGuestTest("ExecBackgroundChildEOF", (*suite).testExecBackgroundChildEOF)
}

// Tolerances, after each round once the agent settled: descriptors exactly
// at the baseline, goroutines no more. RssAnon: the Go heap of a busy
// agent grows to its goal (4 MiB at least) and keeps those pages while
// containers exist (the agent trims only when the sandbox is empty), so
// the first round may raise it to a plateau, at most soakPlateau above the
// baseline; the second round, as many operations again, must stay within
// soakAnonSlack of the first. Leaked execs used to cost about 20 KiB each,
// 4 MiB per 200, in every round.
const (
	soakPlateau   = 3 << 20
	soakAnonSlack = 512 << 10
)

// agentFigures are the agent's own resource figures.
type agentFigures struct {
	fds, goroutines int
	anon            float64
}

func (f agentFigures) String() string {
	return fmt.Sprintf("fds %d, goroutines %d, RssAnon %.0f KiB", f.fds, f.goroutines, f.anon/1024)
}

// sample finds the first sample of any of names in a Prometheus text
// exposition (a name may carry a label selector, e.g. x{item="y"}).
func sample(text string, names ...string) (float64, bool) {
	for _, name := range names {
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == name {
				if v, err := strconv.ParseFloat(f[1], 64); err == nil {
					return v, true
				}
			}
		}
	}
	return 0, false
}

func (s *suite) agentFigures(t *testing.T) agentFigures {
	t.Helper()
	m, err := s.cli.Agent.GetMetrics(s.rpcCtx(t), &pb.GetMetricsRequest{})
	check(t, "GetMetrics", err)
	fds, ok1 := sample(m.Metrics, "kata_agent_open_fds", "kata_agent_process_open_fds")
	gr, ok2 := sample(m.Metrics, "kata_agent_goroutines")
	anon, ok3 := sample(m.Metrics, "kata_agent_anon_rss_bytes")
	if !ok3 {
		// Upstream's family reports kB.
		if kb, ok := sample(m.Metrics, `kata_agent_proc_status{item="rssanon"}`); ok {
			anon, ok3 = kb*1024, true
		}
	}
	if !ok1 || !ok2 || !ok3 {
		t.Fatalf("agent metrics lack open fds (%v), goroutines (%v) or RssAnon (%v)", ok1, ok2, ok3)
	}
	return agentFigures{fds: int(fds), goroutines: int(gr), anon: anon}
}

// quiesceAgent waits until the agent's descriptors and goroutines have
// not changed for longer than its release grace period (2 s) and returns
// its figures: the baseline.
func (s *suite) quiesceAgent(t *testing.T) agentFigures {
	t.Helper()
	const window = 3 * time.Second
	deadline := time.Now().Add(time.Minute)
	last, since := agentFigures{fds: -1}, time.Now()
	for time.Now().Before(deadline) {
		f := s.agentFigures(t)
		if f.fds != last.fds || f.goroutines != last.goroutines {
			last, since = f, time.Now()
		} else if time.Since(since) > window {
			return f
		}
		time.Sleep(250 * time.Millisecond)
	}
	return last
}

// settleAgent waits (bounded) until descriptors and goroutines are back
// to base, then a moment more for memory, and returns the figures. The
// moment is longer than the agent's quiet-time trim delay (1 s after the
// last request), and the figures are read again until settled: a trim
// running just then is a goroutine of its own for a few milliseconds.
func (s *suite) settleAgent(t *testing.T, base agentFigures) agentFigures {
	t.Helper()
	settled := func(f agentFigures) bool { return f.fds <= base.fds && f.goroutines <= base.goroutines }
	wait := func(limit time.Duration) agentFigures {
		deadline := time.Now().Add(limit)
		for {
			f := s.agentFigures(t)
			if settled(f) || time.Now().After(deadline) {
				return f
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	wait(30 * time.Second)
	time.Sleep(1500 * time.Millisecond)
	return wait(5 * time.Second)
}

// checkRounds runs round twice and checks the agent's figures after each
// against the baseline (see the tolerances above).
func (s *suite) checkRounds(t *testing.T, what string, base agentFigures, round func()) {
	t.Helper()
	var first agentFigures
	for r := 1; r <= 2; r++ {
		start := time.Now()
		round()
		now := s.settleAgent(t, base)
		t.Logf("%s, round %d (%v): agent before %v; after %v", what, r, time.Since(start).Round(time.Millisecond), base, now)
		if now.fds > base.fds || now.goroutines > base.goroutines {
			t.Errorf("%s, round %d: the agent holds more descriptors or goroutines: before %v; after %v", what, r, base, now)
		}
		switch {
		case r == 1 && now.anon > base.anon+soakPlateau:
			t.Errorf("%s, round 1: RssAnon grew by %.0f KiB, more than the %d KiB a heap plateau explains",
				what, (now.anon-base.anon)/1024, soakPlateau>>10)
		case r == 2 && now.anon > first.anon+soakAnonSlack:
			t.Errorf("%s, round 2: RssAnon grew again by %.0f KiB (slack %d KiB): memory grows with the count",
				what, (now.anon-first.anon)/1024, soakAnonSlack>>10)
		}
		first = now
	}
}

func soakCount(t *testing.T) int {
	if v := os.Getenv("E2E_SOAK"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("E2E_SOAK=%q: want a positive count", v)
		}
		return n
	}
	return 10
}

// readStream reads one stream to the end (zero-length reply).
func (s *suite) readStream(t *testing.T, cid, execID string, stderr bool) string {
	t.Helper()
	ctx := s.rpcCtx(t)
	var out bytes.Buffer
	for {
		req := &pb.ReadStreamRequest{ContainerId: cid, ExecId: execID, Len: 32 << 10}
		var r *pb.ReadStreamResponse
		var err error
		if stderr {
			r, err = s.cli.Agent.ReadStderr(ctx, req)
		} else {
			r, err = s.cli.Agent.ReadStdout(ctx, req)
		}
		check(t, fmt.Sprintf("read %s/%s (stderr %v)", cid, execID, stderr), err)
		if len(r.Data) == 0 {
			return out.String()
		}
		out.Write(r.Data)
	}
}

type soakKind struct {
	name             string
	tty              bool
	readOut, readErr bool
}

var soakKinds = []soakKind{
	{name: "stdout-only", readOut: true}, // the case: stderr never read
	{name: "no-reads"},                   // a detached exec
	{name: "both-streams", readOut: true, readErr: true},
	{name: "tty", tty: true, readOut: true},
}

const soakScript = "echo out; echo err >&2"

func (s *suite) soakExec(t *testing.T, cid, id string, k soakKind) {
	t.Helper()
	_, err := s.cli.Agent.ExecProcess(s.rpcCtx(t), &pb.ExecProcessRequest{
		ContainerId: cid, ExecId: id, Process: fixture.Process(k.tty, "sh", "-c", soakScript),
	})
	check(t, "ExecProcess "+id, err)
	s.checkSoakRun(t, "exec", cid, id, k)
}

// checkSoakRun reads the streams k asks for, checks what soakScript wrote
// to them, and waits for a zero status.
func (s *suite) checkSoakRun(t *testing.T, what, cid, id string, k soakKind) {
	t.Helper()
	if k.readOut {
		if out := s.readStream(t, cid, id, false); !strings.Contains(out, "out") {
			t.Fatalf("%s %s stdout %q", what, id, out)
		}
	}
	if k.readErr {
		if out := s.readStream(t, cid, id, true); out != "err\n" {
			t.Fatalf("%s %s stderr %q", what, id, out)
		}
	}
	if st := s.wait(t, cid, id); st != 0 {
		t.Fatalf("%s %s status %d", what, id, st)
	}
}

func (s *suite) soakContainer(t *testing.T, cid string, k soakKind) {
	t.Helper()
	var opts []fixture.SpecOption
	if k.tty {
		opts = append(opts, fixture.WithTerminal())
	}
	s.createContainer(t, cid, []string{"sh", "-c", soakScript}, opts...)
	s.checkSoakRun(t, "container", cid, cid, k)
	s.remove(t, cid)
}

// testExecReleaseSoak: after n execs of each kind and n/5 containers of
// each kind the agent holds what it held before.
func (s *suite) testExecReleaseSoak(t *testing.T) {
	n := soakCount(t)
	const box = "soakbox"
	s.createContainer(t, box, []string{"sleep", "100000"})
	defer s.remove(t, box)
	for _, k := range soakKinds { // warm up lazily created state
		s.soakExec(t, box, "warm-"+k.name, k)
	}
	base := s.quiesceAgent(t)
	seq := 0
	s.checkRounds(t, fmt.Sprintf("%d execs of each of %d kinds", n, len(soakKinds)), base, func() {
		for _, k := range soakKinds {
			start := time.Now()
			for i := 0; i < n; i++ {
				seq++
				s.soakExec(t, box, fmt.Sprintf("%s-%d", k.name, seq), k)
			}
			if os.Getenv("E2E_SOAK") != "" { // figures per kind for the long run
				t.Logf("%d %s execs in %v; agent then %v", n, k.name, time.Since(start).Round(time.Millisecond), s.settleAgent(t, base))
			}
		}
	})

	nc := max(n/5, 2)
	// Rootfs once per id: the share write is not what is measured.
	for i := 0; i < nc; i++ {
		if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, fmt.Sprintf("soakc%d", i)), s.bb); err != nil {
			t.Fatal(err)
		}
	}
	s.soakContainer(t, "soakc0", soakKinds[0]) // warm up
	base = s.quiesceAgent(t)
	s.checkRounds(t, fmt.Sprintf("%d containers of each of %d kinds", nc, len(soakKinds)), base, func() {
		for _, k := range soakKinds {
			for i := 0; i < nc; i++ {
				s.soakContainer(t, fmt.Sprintf("soakc%d", i), k)
			}
		}
	})
}

// testExecBackgroundChildEOF: an exec that leaves a child running with its
// stdout and stderr (kubectl exec -- sh -c 'daemon &') reaches EOF on both
// streams shortly after it exits, so the runtime, which copies to EOF
// before it asks for the status, does not hang, and the exec is released.
func (s *suite) testExecBackgroundChildEOF(t *testing.T) {
	const box = "bgbox"
	s.createContainer(t, box, []string{"sleep", "100000"})
	defer s.remove(t, box)
	base := s.agentFigures(t)
	_, err := s.cli.Agent.ExecProcess(s.rpcCtx(t), &pb.ExecProcessRequest{
		ContainerId: box, ExecId: "bg", Process: fixture.Process(false, "sh", "-c", "sleep 600 & echo started"),
	})
	check(t, "ExecProcess", err)
	start := time.Now()
	if out := s.readStream(t, box, "bg", false); out != "started\n" {
		t.Fatalf("stdout %q", out)
	}
	if out := s.readStream(t, box, "bg", true); out != "" {
		t.Fatalf("stderr %q", out)
	}
	took := time.Since(start)
	t.Logf("both streams at EOF %v after the exec started", took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Fatalf("EOF took %v: the background child held the streams", took)
	}
	if st := s.wait(t, box, "bg"); st != 0 {
		t.Fatalf("status %d", st)
	}
	if now := s.settleAgent(t, base); now.fds > base.fds {
		t.Errorf("exec with a background child still holds %d descriptors after its wait", now.fds-base.fds)
	}
}
