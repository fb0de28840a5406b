package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// The cycle soak drives the agent the way a busy pod does: many exec
// cycles in one container (both streams read to EOF, status waited), then
// containers created, run and removed concurrently in batches. Before and
// after, the agent's descriptors, goroutines, threads, mounts, cgroups,
// state files and anonymous memory must be where they were; the Go heap
// is sampled along the way (live objects after a collection) to tell
// retained per-exec state, which grows with the count, from heap slack,
// which does not.
//
// SANDBOX_SOAK_CYCLES (default 100: the short variant in `make test`;
// `make soak` runs 10,000) and SANDBOX_SOAK_CONTAINERS (default 20; 100)
// set the counts. SANDBOX_SOAK_HEAPPROFILE=<file> writes a heap profile
// at the end of the exec cycles.

// Tolerances. Descriptors, goroutines, mounts, cgroups and state files
// come back exactly. Threads: the Go runtime keeps an OS thread it
// started for a blocking call, so a burst of concurrent calls may raise
// the count once, to a level bounded by the concurrency, never by the
// count of operations: cycleThreadSlack. Live heap objects after a
// collection: a per-exec record kept (a process, its map entry, names,
// channels, files) is five objects or more per cycle, 500 in the short
// run and 50,000 in the long one; what does not grow with the count
// (pools, caches, the runtime's own) moved by at most 300 over 10,000
// cycles and 100 containers.
const (
	cycleThreadSlack = 16
	cycleObjectSlack = 500
	// RssAnon after the heap was returned to the OS: generous until the
	// memory work lands; the figure is logged.
	cycleAnonSlack = 4 << 20
	cycleBatch     = 10
)

// raceBuild is set under -race (soak_race_test.go): RssAnon is then
// reported, not bounded.
var raceBuild bool

func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive count", name, v)
	}
	return n
}

// agentState is what the agent holds, seen from the test process that
// hosts it.
type agentState struct {
	fds, goroutines, threads int
	mounts, cgroups, files   int
	anon                     uint64 // RssAnon after FreeOSMemory
	heapObjects, heapInuse   uint64 // after a collection
}

func (s agentState) String() string {
	return fmt.Sprintf("fds %d, goroutines %d, threads %d, mounts %d, cgroups %d, state files %d, RssAnon %d KiB, heap %d objects / %d KiB in use",
		s.fds, s.goroutines, s.threads, s.mounts, s.cgroups, s.files, s.anon>>10, s.heapObjects, s.heapInuse>>10)
}

// agentMounts counts the mounts under the agent's directories (the rest
// of the host's mount table belongs to other processes).
func (a *agent) agentMounts(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(a.roots.State) + "/"
	n := 0
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		if f := bytes.Fields(l); len(f) > 4 && strings.HasPrefix(string(f[4])+"/", dir) {
			n++
		}
	}
	return n
}

// stateFiles counts the entries under the agent's directories: the
// host agent's /run.
func (a *agent) stateFiles(t *testing.T) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Dir(a.roots.State), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (a *agent) measureState(t *testing.T) agentState {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	debug.FreeOSMemory()
	return agentState{
		fds: countFDs(t), goroutines: runtime.NumGoroutine(), threads: threads(t),
		mounts: a.agentMounts(t), cgroups: countCgroups(a.group), files: a.stateFiles(t),
		anon: rssAnon(t), heapObjects: ms.HeapObjects, heapInuse: ms.HeapInuse,
	}
}

// settleState waits until what is released on a timer (execs after
// their grace period) is released, and measures.
func (a *agent) settleState(t *testing.T, base agentState) agentState {
	t.Helper()
	deadline := time.Now().Add(settleTime)
	for {
		fds, gr := countFDs(t), runtime.NumGoroutine()
		if (fds <= base.fds && gr <= base.goroutines) || time.Now().After(deadline) {
			return a.measureState(t)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func checkState(t *testing.T, what string, base, now agentState) {
	t.Helper()
	t.Logf("%s: before %v", what, base)
	t.Logf("%s: after  %v", what, now)
	bad := fixture.Grown(
		fixture.Gauge{Name: "descriptors", Was: int64(base.fds), Is: int64(now.fds)},
		fixture.Gauge{Name: "goroutines", Was: int64(base.goroutines), Is: int64(now.goroutines)},
		fixture.Gauge{Name: "mounts", Was: int64(base.mounts), Is: int64(now.mounts)},
		fixture.Gauge{Name: "cgroups", Was: int64(base.cgroups), Is: int64(now.cgroups)},
		fixture.Gauge{Name: "state files", Was: int64(base.files), Is: int64(now.files)},
		fixture.Gauge{Name: "threads", Was: int64(base.threads), Is: int64(now.threads), MayGrow: cycleThreadSlack},
		fixture.Gauge{Name: "live heap objects", Was: int64(base.heapObjects), Is: int64(now.heapObjects), MayGrow: cycleObjectSlack},
	)
	if now.anon > base.anon+cycleAnonSlack && !raceBuild {
		bad = append(bad, fmt.Sprintf("RssAnon %d -> %d KiB (tolerance %d KiB)", base.anon>>10, now.anon>>10, cycleAnonSlack>>10))
	}
	if len(bad) > 0 {
		t.Errorf("%s left resources behind: %s", what, strings.Join(bad, "; "))
	}
}

// execCycle runs one exec in cid that writes to both streams, reads both
// to EOF and waits for a zero status.
func (a *agent) execCycle(ctx context.Context, cid, id string) error {
	p := a.spec(false, "/bin/sh", "-c", "echo out; echo err >&2").Process
	if _, err := a.cli.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: cid, ExecId: id, Process: p}); err != nil {
		return fmt.Errorf("ExecProcess %s: %w", id, err)
	}
	for _, stderr := range []bool{false, true} {
		want := map[bool]string{false: "out\n", true: "err\n"}[stderr]
		if out, err := a.readAll(ctx, cid, id, stderr); err != nil || out != want {
			return fmt.Errorf("exec %s (stderr %v): read %q, %v; want %q", id, stderr, out, err, want)
		}
	}
	r, err := a.cli.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: id})
	if err == nil && r.Status != 0 {
		err = fmt.Errorf("status %d", r.Status)
	}
	if err != nil {
		return fmt.Errorf("WaitProcess %s: %w", id, err)
	}
	return nil
}

// containerCycle creates, starts, reads, waits for and removes one
// container; safe to run concurrently.
func (a *agent) containerCycle(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := a.spec(false, "/bin/sh", "-c", "echo out; echo err >&2")
	if _, err := a.cli.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: spec}); err != nil {
		return fmt.Errorf("CreateContainer %s: %w", id, err)
	}
	if _, err := a.cli.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("StartContainer %s: %w", id, err)
	}
	if out, err := a.readAll(ctx, id, "", false); err != nil || out != "out\n" {
		return fmt.Errorf("container %s stdout %q, %v", id, out, err)
	}
	if out, err := a.readAll(ctx, id, "", true); err != nil || out != "err\n" {
		return fmt.Errorf("container %s stderr %q, %v", id, out, err)
	}
	r, err := a.cli.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: id})
	if err == nil && r.Status != 0 {
		err = fmt.Errorf("status %d", r.Status)
	}
	if err != nil {
		return fmt.Errorf("WaitProcess %s: %w", id, err)
	}
	if _, err := a.cli.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: id, Timeout: 30}); err != nil {
		return fmt.Errorf("RemoveContainer %s: %w", id, err)
	}
	return nil
}

// containerBatches runs n container cycles, batch at a time.
func (a *agent) containerBatches(t *testing.T, prefix string, n, batch int) {
	t.Helper()
	name := func(i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
	if err := fixture.InBatches(n, batch, name, a.containerCycle); err != nil {
		t.Fatal(err)
	}
}

// TestSoakCycles: after many exec cycles in one container and many
// containers run concurrently in batches, the agent holds what it held
// before, and its live heap does not grow with the count.
func TestSoakCycles(t *testing.T) {
	a := startAgent(t)
	cycles := envCount(t, "SANDBOX_SOAK_CYCLES", 100)
	containers := envCount(t, "SANDBOX_SOAK_CONTAINERS", 20)
	a.run("cycles", a.spec(false, "/bin/sleep", "100000"))
	// Warm up lazily created state (pools, the epoll loop, the cgroup
	// group, threads for concurrent calls).
	for i := 0; i < 20; i++ {
		rpc(t, "warm-up exec", func(ctx context.Context) error { return a.execCycle(ctx, "cycles", fmt.Sprintf("warm-%d", i)) })
	}
	a.containerBatches(t, "warm", cycleBatch, cycleBatch)
	quiesce(t)
	base := a.measureState(t)

	// Heap samples along the way: live objects and bytes after a
	// collection, and RssAnon before the heap is handed back (what the
	// guest agent shows between scrapes) and after.
	step := max(cycles/10, 1)
	start := time.Now()
	t.Logf("%8s %12s %14s %14s %16s %16s %16s", "cycles", "heap objects", "heap in use", "stacks", "Go mapped", "RssAnon (live)", "RssAnon (freed)")
	for i := 1; i <= cycles; i++ {
		rpc(t, "exec cycle", func(ctx context.Context) error { return a.execCycle(ctx, "cycles", fmt.Sprintf("c-%d", i)) })
		if i%step == 0 || i == cycles {
			live := rssAnon(t)
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			debug.FreeOSMemory()
			t.Logf("%8d %12d %10d KiB %10d KiB %12d KiB %12d KiB %12d KiB", i, ms.HeapObjects, ms.HeapInuse>>10,
				ms.StackInuse>>10, (ms.Sys-ms.HeapReleased)>>10, live>>10, rssAnon(t)>>10)
		}
	}
	t.Logf("%d exec cycles in %v", cycles, time.Since(start).Round(time.Millisecond))
	if p := os.Getenv("SANDBOX_SOAK_HEAPPROFILE"); p != "" {
		writeHeapProfile(t, p)
	}
	checkState(t, fmt.Sprintf("%d exec cycles", cycles), base, a.settleState(t, base))

	start = time.Now()
	a.containerBatches(t, "batch", containers, cycleBatch)
	t.Logf("%d containers, %d at a time, in %v", containers, cycleBatch, time.Since(start).Round(time.Millisecond))
	checkState(t, fmt.Sprintf("%d exec cycles and %d containers", cycles, containers), base, a.settleState(t, base))
	a.remove("cycles")
}

func writeHeapProfile(t *testing.T, path string) {
	t.Helper()
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("heap profile in %s", path)
}
