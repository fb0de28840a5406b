//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// The cycle soak in the guest: exec cycles in one container (both streams
// read to EOF, status waited), then containers created, run and removed
// concurrently in batches. Before and after, the agent's descriptors,
// goroutines, threads, mounts (/proc/1/mountinfo), cgroups (directories
// under /sys/fs/cgroup), files on /run and RssAnon, seen from the
// inspector container (faults_test.go) and the agent's metrics.
// E2E_SOAK_CYCLES (default 50; `make soak`: 1,000) and
// E2E_SOAK_CONTAINERS (default 10; `make soak`: 100) set the counts.

func init() {
	registerSharedGuestTest("SoakCycles", (*suite).testSoakCycles)
}

// Tolerances: descriptors, goroutines, mounts, cgroups and /run files
// come back exactly. Threads: the Go runtime keeps the OS threads a burst
// of concurrent blocking calls made it start, a level set by the
// concurrency (10 containers at once), not by the count. RssAnon: the
// figure is reported; the bound is generous while the memory work is
// under way (baseline: 2.5 MB idle, 8 MB after 1,000 execs and 100
// containers).
const (
	guestThreadSlack = 16
	guestAnonSlack   = 12 << 20
	guestBatch       = 10
)

type guestState struct {
	agentFigures
	threads                int
	mounts, cgroups, files int
}

func (g guestState) String() string {
	return fmt.Sprintf("%v, threads %d, mounts %d, cgroups %d, /run files %d", g.agentFigures, g.threads, g.mounts, g.cgroups, g.files)
}

func (s *suite) guestState(t *testing.T, f agentFigures) guestState {
	t.Helper()
	out := s.inspect(t, "wc -l < /host/proc/1/mountinfo; find /host/cgroup -type d | wc -l; find /host/run -xdev | wc -l")
	n := strings.Fields(out)
	if len(n) != 3 {
		t.Fatalf("inspector counts %q", out)
	}
	g := guestState{agentFigures: f}
	for i, p := range []*int{&g.mounts, &g.cgroups, &g.files} {
		v, err := strconv.Atoi(n[i])
		if err != nil {
			t.Fatalf("inspector counts %q: %v", out, err)
		}
		*p = v
	}
	m, err := s.cli.Agent.GetMetrics(s.rpcCtx(t), &pb.GetMetricsRequest{})
	check(t, "GetMetrics", err)
	th, ok := sample(m.Metrics, "kata_agent_threads")
	if !ok {
		t.Fatal("agent metrics lack kata_agent_threads")
	}
	g.threads = int(th)
	return g
}

func checkGuestState(t *testing.T, what string, base, now guestState) {
	t.Helper()
	t.Logf("%s: before %v", what, base)
	t.Logf("%s: after  %v", what, now)
	bad := fixture.Grown(
		fixture.Gauge{Name: "descriptors", Was: int64(base.fds), Is: int64(now.fds)},
		fixture.Gauge{Name: "goroutines", Was: int64(base.goroutines), Is: int64(now.goroutines)},
		fixture.Gauge{Name: "mounts", Was: int64(base.mounts), Is: int64(now.mounts)},
		fixture.Gauge{Name: "cgroups", Was: int64(base.cgroups), Is: int64(now.cgroups)},
		fixture.Gauge{Name: "/run files", Was: int64(base.files), Is: int64(now.files)},
		fixture.Gauge{Name: "threads", Was: int64(base.threads), Is: int64(now.threads), MayGrow: guestThreadSlack},
	)
	if now.anon > base.anon+guestAnonSlack {
		bad = append(bad, fmt.Sprintf("RssAnon %.0f -> %.0f KiB (tolerance %d KiB)", base.anon/1024, now.anon/1024, guestAnonSlack>>10))
	}
	if len(bad) > 0 {
		t.Errorf("%s left resources behind: %s", what, strings.Join(bad, "; "))
	}
}

// containerCycle creates, starts, reads, waits for and removes container
// cid, whose rootfs is already in the share; safe to run concurrently.
func (s *suite) containerCycle(cid string) error {
	bctx, bcancel := s.vm.Bound(context.Background())
	defer bcancel()
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute)
	defer cancel()
	a := s.cli.Agent
	if _, err := a.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid, ExecId: cid, OCI: fixture.Spec(sandboxID, cid, []string{"sh", "-c", soakScript}),
	}); err != nil {
		return fmt.Errorf("CreateContainer %s: %w", cid, err)
	}
	if _, err := a.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid}); err != nil {
		return fmt.Errorf("StartContainer %s: %w", cid, err)
	}
	for _, stderr := range []bool{false, true} {
		var got strings.Builder
		for {
			req := &pb.ReadStreamRequest{ContainerId: cid, ExecId: cid, Len: 32 << 10}
			var r *pb.ReadStreamResponse
			var err error
			if stderr {
				r, err = a.ReadStderr(ctx, req)
			} else {
				r, err = a.ReadStdout(ctx, req)
			}
			if err != nil {
				return fmt.Errorf("read %s (stderr %v): %w", cid, stderr, err)
			}
			if len(r.Data) == 0 {
				break
			}
			got.Write(r.Data)
		}
		if want := map[bool]string{false: "out\n", true: "err\n"}[stderr]; got.String() != want {
			return fmt.Errorf("container %s (stderr %v) wrote %q, want %q", cid, stderr, got.String(), want)
		}
	}
	w, err := a.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: cid})
	if err == nil && w.Status != 0 {
		err = fmt.Errorf("status %d", w.Status)
	}
	if err != nil {
		return fmt.Errorf("WaitProcess %s: %w", cid, err)
	}
	if _, err := a.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: cid, Timeout: 30}); err != nil {
		return fmt.Errorf("RemoveContainer %s: %w", cid, err)
	}
	return nil
}

// containerBatches runs n container cycles, guestBatch at a time.
func (s *suite) containerBatches(t *testing.T, prefix string, n int) {
	t.Helper()
	name := func(i int) string { return fmt.Sprintf("%s%d", prefix, i) }
	for i := 0; i < n; i++ {
		if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, name(i)), s.bb); err != nil {
			t.Fatal(err)
		}
	}
	if err := fixture.InBatches(n, guestBatch, name, s.containerCycle); err != nil {
		t.Fatal(err)
	}
}

// testSoakCycles: after the exec cycles, and again after the container
// batches, the agent holds what it held before.
func (s *suite) testSoakCycles(t *testing.T) {
	cycles := envInt(t, "E2E_SOAK_CYCLES", 50)
	containers := envInt(t, "E2E_SOAK_CONTAINERS", 10)
	const box = "cyclebox"
	s.createContainer(t, box, []string{"sleep", "100000"})
	defer s.remove(t, box)
	k := soakKind{name: "both-streams", readOut: true, readErr: true}
	for i := 0; i < 10; i++ { // warm up
		s.soakExec(t, box, fmt.Sprintf("cwarm-%d", i), k)
	}
	s.containerBatches(t, "cwarm", guestBatch)
	s.inspect(t, "true")
	base := s.guestState(t, s.quiesceAgent(t))

	step := max(cycles/10, 1)
	start := time.Now()
	for i := 1; i <= cycles; i++ {
		s.soakExec(t, box, fmt.Sprintf("cyc-%d", i), k)
		if i%step == 0 || i == cycles {
			f := s.agentFigures(t)
			t.Logf("%5d exec cycles, %v: agent %v", i, time.Since(start).Round(time.Millisecond), f)
		}
	}
	after := s.guestState(t, s.settleAgent(t, base.agentFigures))
	checkGuestState(t, fmt.Sprintf("%d exec cycles", cycles), base, after)

	start = time.Now()
	s.containerBatches(t, "cyc", containers)
	t.Logf("%d containers, %d at a time, in %v", containers, guestBatch, time.Since(start).Round(time.Millisecond))
	after = s.guestState(t, s.settleAgent(t, base.agentFigures))
	checkGuestState(t, fmt.Sprintf("%d exec cycles and %d containers", cycles, containers), base, after)
}
