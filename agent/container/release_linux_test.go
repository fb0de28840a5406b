package container

import (
	"context"
	"errors"
	"io"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeClock runs timers when the test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock and runs the timers that came due, in order,
// including those they arm.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
		var next *fakeTimer
		for _, t := range c.timers {
			if !t.stopped && !t.at.After(end) {
				next = t
				break
			}
		}
		if next == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		next.stopped = true
		c.now = next.at
		c.mu.Unlock()
		next.f()
	}
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}

const testGrace = 2 * time.Second

// testContainer is a started container without libcontainer behind it;
// its processes are pipes the test writes to and "exits".
func testContainer(t *testing.T, pol ExecPolicy) (*Container, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	pol.Clock = clk
	if pol.Grace == 0 {
		pol.Grace = testGrace
	}
	if pol.ExitDrain == 0 {
		pol.ExitDrain = 50 * time.Millisecond
	}
	c := &Container{id: "c", execs: map[string]*Process{}, started: true, policy: pol.withDefaults()}
	c.init, _ = testProcess(t, c, "c", true)
	return c, clk
}

// childEnds are the process side of a test process's stdio.
type childEnds struct{ stdin, stdout, stderr *os.File }

func (e childEnds) close() {
	_ = e.stdin.Close()
	_ = e.stdout.Close()
	_ = e.stderr.Close()
}

func testProcess(t *testing.T, c *Container, id string, isInit bool) (*Process, childEnds) {
	t.Helper()
	p := &Process{ID: id, Init: isInit, done: make(chan struct{}), policy: &c.policy}
	var e childEnds
	var err error
	if e.stdin, p.stdin, err = os.Pipe(); err != nil {
		t.Fatal(err)
	}
	if p.stdout, e.stdout, err = os.Pipe(); err != nil {
		t.Fatal(err)
	}
	if p.stderr, e.stderr, err = os.Pipe(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.close(); p.closeIO() })
	if !isInit {
		if err := c.policy.Budget.take(id, c.id); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		c.execs[id] = p
		c.mu.Unlock()
	}
	return p, e
}

// finished is an exec that wrote out and err and exited with code 7.
func finished(t *testing.T, c *Container, id string) *Process {
	t.Helper()
	p, e := testProcess(t, c, id, false)
	_, _ = e.stdout.WriteString("out\n")
	_, _ = e.stderr.WriteString("err\n")
	e.close()
	p.setExited(7)
	return p
}

// drain reads a stream to EOF as the server's read handler does.
func drain(t *testing.T, c *Container, p *Process, stderr bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []byte
	for {
		var b []byte
		var err error
		if stderr {
			b, err = readStderr(ctx, p, 0)
		} else {
			b, err = readStdout(ctx, p, 0)
		}
		if errors.Is(err, io.EOF) {
			c.Release(p.ID)
			return string(out)
		}
		if err != nil {
			t.Fatalf("read %s: %v", p.ID, err)
		}
		out = append(out, b...)
	}
}

func wait(t *testing.T, c *Container, p *Process) int32 {
	t.Helper()
	code, err := p.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.Waited(p)
	return code
}

func known(c *Container, id string) bool {
	_, err := c.Process(id)
	return err == nil
}

func isClosed(p *Process) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// TestWaitedExecReleasedAfterGrace: the case. Stdout read, status
// waited, stderr never read: the exec and its descriptors go once the
// grace period has passed without reads, not never.
func TestWaitedExecReleasedAfterGrace(t *testing.T) {
	c, clk := testContainer(t, ExecPolicy{})
	p := finished(t, c, "e")
	if got := drain(t, c, p, false); got != "out\n" {
		t.Fatalf("stdout %q", got)
	}
	if code := wait(t, c, p); code != 7 {
		t.Fatalf("status %d, want 7", code)
	}
	clk.Advance(testGrace - time.Millisecond)
	if !known(c, "e") || isClosed(p) {
		t.Fatal("released before the grace period ended: a reader still copying would be cut off")
	}
	// Within the grace period the unread stream is still readable.
	clk.Advance(time.Millisecond)
	if known(c, "e") || !isClosed(p) {
		t.Fatalf("exec still held after the grace period (known %v, stdio closed %v)", known(c, "e"), isClosed(p))
	}
	if _, err := c.Process("e"); !errdefs.IsNotFound(err) {
		t.Fatalf("lookup after release: %v, want NotFound", err)
	}
	if clk.pending() != 0 {
		t.Fatalf("%d timers left", clk.pending())
	}
}

// TestUnreadStreamReadableDuringGrace: output the host has not read yet
// can still be read after the wait, within the grace period.
func TestUnreadStreamReadableDuringGrace(t *testing.T) {
	c, clk := testContainer(t, ExecPolicy{})
	p := finished(t, c, "e")
	wait(t, c, p)
	clk.Advance(testGrace / 2)
	if got := drain(t, c, p, true); got != "err\n" {
		t.Fatalf("stderr %q", got)
	}
	if got := drain(t, c, p, false); got != "out\n" {
		t.Fatalf("stdout %q", got)
	}
	// Both streams at EOF after the wait: released at once.
	if known(c, "e") || !isClosed(p) {
		t.Fatal("drained and waited exec not released at once")
	}
}

// TestDrainedThenWaitedReleasedAtOnce keeps today's fast path.
func TestDrainedThenWaitedReleasedAtOnce(t *testing.T) {
	c, clk := testContainer(t, ExecPolicy{})
	p := finished(t, c, "e")
	drain(t, c, p, false)
	drain(t, c, p, true)
	wait(t, c, p)
	if known(c, "e") || !isClosed(p) || clk.pending() != 0 {
		t.Fatalf("known %v closed %v timers %d", known(c, "e"), isClosed(p), clk.pending())
	}
}

// TestReadsExtendGraceUpToMaxDrain: a reader still getting data keeps the
// streams open, for MaxDrain at most.
func TestReadsExtendGraceUpToMaxDrain(t *testing.T) {
	c, clk := testContainer(t, ExecPolicy{MaxDrain: 5 * testGrace})
	p, e := testProcess(t, c, "e", false)
	p.setExited(0) // a child it left behind still writes
	wait(t, c, p)
	ctx := context.Background()
	for i := 0; i < 9; i++ {
		clk.Advance(testGrace / 2)
		if !known(c, "e") {
			t.Fatalf("released after %v although a read got data %v ago", time.Duration(i+1)*testGrace/2, testGrace/2)
		}
		_, _ = e.stdout.WriteString("more\n")
		if b, err := readStdout(ctx, p, 0); err != nil || string(b) != "more\n" {
			t.Fatalf("read %q, %v", b, err)
		}
	}
	clk.Advance(testGrace / 2) // 5 graces after the wait
	if known(c, "e") || !isClosed(p) {
		t.Fatal("streams kept past MaxDrain")
	}
	// A read after the release reports EOF, never an error or a hang.
	if _, err := readStdout(ctx, p, 0); !errors.Is(err, io.EOF) {
		t.Fatalf("read after release: %v, want EOF", err)
	}
}

// TestIdleAfterDataReleases: after the last data, Grace of silence ends it.
func TestIdleAfterDataReleases(t *testing.T) {
	c, clk := testContainer(t, ExecPolicy{})
	p, e := testProcess(t, c, "e", false)
	p.setExited(0)
	wait(t, c, p)
	clk.Advance(testGrace - time.Millisecond)
	_, _ = e.stdout.WriteString("x")
	if _, err := readStdout(context.Background(), p, 0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(testGrace - time.Millisecond)
	if !known(c, "e") {
		t.Fatal("released although a read got data less than the grace period ago")
	}
	clk.Advance(time.Millisecond)
	if known(c, "e") {
		t.Fatal("not released after the grace period of silence")
	}
}

// TestDrainedNeverWaitedHoldsNoDescriptors: an exited exec whose output
// was read to the end gives back its descriptors at once, keeps its exit
// status for a later wait, and goes at that wait.
func TestDrainedNeverWaitedHoldsNoDescriptors(t *testing.T) {
	c, _ := testContainer(t, ExecPolicy{})
	p := finished(t, c, "e")
	drain(t, c, p, false)
	if isClosed(p) {
		t.Fatal("closed with stderr unread")
	}
	drain(t, c, p, true)
	if !isClosed(p) || !known(c, "e") || c.policy.Budget.Held() != 1 {
		t.Fatalf("closed %v known %v budget %d; want descriptors closed and the entry kept", isClosed(p), known(c, "e"), c.policy.Budget.Held())
	}
	if code := wait(t, c, p); code != 7 || known(c, "e") {
		t.Fatalf("status %d (want 7), known after wait %v", code, known(c, "e"))
	}
}

// TestInitStdioClosedEntryKept: the init process's stdio goes after its
// wait like an exec's (upstream closes it at the wait); the process stays
// addressable until RemoveContainer.
func TestInitStdioClosedEntryKept(t *testing.T) {
	c, clk := testContainer(t, ExecPolicy{})
	c.init.setExited(0)
	wait(t, c, c.init)
	clk.Advance(testGrace)
	if !isClosed(c.init) {
		t.Fatal("init stdio held after the grace period")
	}
	if p, err := c.Process(""); err != nil || p != c.init {
		t.Fatalf("init lookup after release: %v", err)
	}
	if code, err := c.init.Wait(context.Background()); err != nil || code != 0 {
		t.Fatalf("second wait: %d, %v", code, err)
	}
}

// TestExecBudget: containers sharing a budget refuse an exec beyond it
// with ResourceExhausted, whichever container holds the execs; a
// released exec makes room.
func TestExecBudget(t *testing.T) {
	b := NewExecBudget(2)
	c1, clk := testContainer(t, ExecPolicy{Budget: b})
	c2, _ := testContainer(t, ExecPolicy{Budget: b})
	c2.id = "c2"
	p1 := finished(t, c1, "e1")
	finished(t, c2, "e2")
	if b.Held() != 2 {
		t.Fatalf("budget holds %d, want 2", b.Held())
	}
	_, err := c1.Exec("e3", &specs.Process{Args: []string{"true"}, Cwd: "/"}, Streams{})
	if !errdefs.IsResourceExhausted(err) {
		t.Fatalf("exec beyond the budget: %v, want ResourceExhausted", err)
	}
	t.Log(err)
	if b.Held() != 2 || known(c1, "e3") {
		t.Fatalf("refused exec left a reservation (budget %d)", b.Held())
	}
	wait(t, c1, p1)
	clk.Advance(testGrace)
	if b.Held() != 1 {
		t.Fatalf("budget holds %d after one exec was released, want 1", b.Held())
	}
}

// TestExitDrainEndsStreamHeldByChild: once the process exited, a read
// that gets no data within ExitDrain reports EOF, whether it was waiting
// at the exit or started after: a child left in the background holds the
// stream open, and the runtime waits for EOF before it asks for the
// status.
func TestExitDrainEndsStreamHeldByChild(t *testing.T) {
	c, _ := testContainer(t, ExecPolicy{ExitDrain: 50 * time.Millisecond})
	p, e := testProcess(t, c, "e", false)
	_ = e // the child ends stay open: the background child holds them
	errc := make(chan error, 1)
	go func() {
		_, err := readStdout(context.Background(), p, 0)
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("read returned %v while the process runs", err)
	case <-time.After(100 * time.Millisecond):
	}
	p.setExited(0)
	select {
	case err := <-errc:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("read in flight at the exit: %v, want EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read in flight at the exit still blocked")
	}
	done := make(chan error, 1)
	go func() {
		_, err := readStderr(context.Background(), p, 0)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("read after the exit: %v, want EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read after the exit blocked")
	}
	// Data that does come within the drain is still delivered.
	q, qe := testProcess(t, c, "q", false)
	q.setExited(0)
	go func() { time.Sleep(10 * time.Millisecond); _, _ = qe.stdout.WriteString("late") }()
	if b, err := readStdout(context.Background(), q, 0); err != nil || string(b) != "late" {
		t.Fatalf("late output %q, %v", b, err)
	}
}

// TestCancelledReadLeavesStreamUsable: a read whose call was cancelled
// returns the context error and the next read works.
func TestCancelledReadLeavesStreamUsable(t *testing.T) {
	c, _ := testContainer(t, ExecPolicy{})
	p, e := testProcess(t, c, "e", false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := readStdout(ctx, p, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled read: %v", err)
	}
	_, _ = e.stdout.WriteString("x")
	if b, err := readStdout(context.Background(), p, 0); err != nil || string(b) != "x" {
		t.Fatalf("read after a cancelled one: %q, %v", b, err)
	}
}

// TestDestroyStopsReleaseTimer: closing stdio (RemoveContainer) cancels a
// pending release, so no timer outlives the container.
func TestDestroyStopsReleaseTimer(t *testing.T) {
	c, clk := testContainer(t, ExecPolicy{})
	p := finished(t, c, "e")
	wait(t, c, p)
	if clk.pending() != 1 {
		t.Fatalf("%d timers, want 1", clk.pending())
	}
	p.closeIO()
	if clk.pending() != 0 {
		t.Fatalf("%d timers after close, want 0", clk.pending())
	}
}
