package container

import (
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// When a finished process's resources go.
//
// The upstream agent forgets an exec'd process, and closes its stdio, as
// soon as WaitProcess has returned its exit status; the Kata runtime asks
// for the status only after it has copied every stream it attached to the
// end, and it attaches none for a detached exec. Here the streams stay
// readable for a short grace period after the wait instead, so a reader
// that is still copying the last output is not cut off: the process is
// released when every output stream is at EOF, or when no read returned
// data for ExecPolicy.Grace, and at the latest ExecPolicy.MaxDrain after
// the wait. Released execs are gone (later calls are NotFound); a
// container's init process keeps its entry until RemoveContainer (signals
// and waits still address it) but its stdio is closed the same way.
//
// A process that exited and whose output was read to the end holds no
// descriptor even if nobody has asked for its status yet: only the exit
// status is kept for the wait. What the others can hold is bounded by the
// kernel's pipe capacity per stream (plus what was read ahead, aheadMax
// at most, or a reply that could not be sent) and by the number of execs held at
// once (ExecBudget, shared by the sandbox's containers): each holds up to
// three descriptors, and PID 1 may open 4096 by default.

// ExecPolicy bounds what exec'd processes hold and for how long. Zero
// fields take the defaults below.
type ExecPolicy struct {
	// Grace is how long the streams of a waited process stay open while
	// no read returns data.
	Grace time.Duration
	// MaxDrain caps how long the streams stay open after the wait.
	MaxDrain time.Duration
	// ExitDrain is how long a read waits for data once the process has
	// exited before it reports EOF although the stream is still open (a
	// child left running in the background holds it), as upstream does.
	ExitDrain time.Duration
	// Budget counts the exec'd processes held at once (running, or
	// finished and not yet released) by every container that shares it;
	// nil: a budget of DefaultMaxExecs for this container alone.
	Budget *ExecBudget
	// Clock schedules the release; tests use a fake one.
	Clock Clock
}

// Defaults of ExecPolicy.
const (
	DefaultReleaseGrace = 2 * time.Second
	DefaultMaxDrain     = 30 * time.Second
	// DefaultExitDrain is the upstream agent's drain window.
	DefaultExitDrain = 500 * time.Millisecond
	// DefaultMaxExecs keeps the descriptors of held execs (three each) to
	// well under half of PID 1's default limit of 4096.
	DefaultMaxExecs = 512
)

func (p ExecPolicy) withDefaults() ExecPolicy {
	if p.Grace <= 0 {
		p.Grace = DefaultReleaseGrace
	}
	if p.MaxDrain <= 0 {
		p.MaxDrain = DefaultMaxDrain
	}
	if p.MaxDrain < p.Grace {
		p.MaxDrain = p.Grace
	}
	if p.ExitDrain <= 0 {
		p.ExitDrain = DefaultExitDrain
	}
	if p.Budget == nil {
		p.Budget = NewExecBudget(DefaultMaxExecs)
	}
	if p.Clock == nil {
		p.Clock = realClock{}
	}
	return p
}

// Clock is the time source of the release timers.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a scheduled call that can be cancelled.
type Timer interface {
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// ExecBudget bounds the exec'd processes held at once by the containers
// that share it.
type ExecBudget struct {
	mu   sync.Mutex
	max  int
	held int
}

// NewExecBudget returns a budget of max execs (DefaultMaxExecs if max is
// not positive).
func NewExecBudget(max int) *ExecBudget {
	if max <= 0 {
		max = DefaultMaxExecs
	}
	return &ExecBudget{max: max}
}

// Held is the number of execs counted now.
func (b *ExecBudget) Held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

func (b *ExecBudget) take(execID, cid string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held >= b.max {
		return fmt.Errorf("exec %q in container %q: %d exec'd processes are running or wait for their status to be collected (WaitProcess), the limit: %w",
			execID, cid, b.held, errdefs.ErrResourceExhausted)
	}
	b.held++
	return nil
}

func (b *ExecBudget) give(n int) {
	b.mu.Lock()
	b.held -= n
	b.mu.Unlock()
}

// Waited records that the host received p's exit status (WaitProcess)
// and releases p once its streams are drained or idle (see above).
func (c *Container) Waited(p *Process) {
	p.mu.Lock()
	p.waited = true
	armed := p.releaseTimer != nil || p.closed
	if !armed {
		p.waitedAt = c.policy.Clock.Now()
		p.lastData = p.waitedAt
	}
	p.mu.Unlock()
	if c.settle(p) || armed {
		return
	}
	c.armRelease(p, c.policy.Grace)
}

// Release is called after a read found a stream at EOF: it frees what p
// no longer needs (see settle). "" or the container id is the init.
func (c *Container) Release(execID string) {
	p, err := c.Process(execID)
	if err != nil {
		return
	}
	c.settle(p)
}

// settle releases an exited process whose status was collected and whose
// output is drained; an exited, drained one whose status was not yet
// collected only gives back its descriptors. It reports whether p was
// released.
func (c *Container) settle(p *Process) bool {
	if !p.Exited() {
		return false
	}
	p.mu.Lock()
	drained := p.drainedLocked()
	waited := p.waited
	p.mu.Unlock()
	switch {
	case drained && waited:
		c.release(p)
		return true
	case drained:
		p.closeIO()
	}
	return false
}

func (c *Container) armRelease(p *Process, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.releaseTimer = c.policy.Clock.AfterFunc(d, func() { c.releaseTick(p) })
}

// releaseTick releases p once its streams were idle for the grace period
// or the drain time is up, and re-arms the timer otherwise.
func (c *Container) releaseTick(p *Process) {
	now := c.policy.Clock.Now()
	p.mu.Lock()
	idle, total := now.Sub(p.lastData), now.Sub(p.waitedAt)
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return
	}
	if idle < c.policy.Grace && total < c.policy.MaxDrain {
		c.armRelease(p, min(c.policy.Grace-idle, c.policy.MaxDrain-total))
		return
	}
	c.release(p)
}

// release forgets an exec'd process and closes the stdio of any process.
func (c *Container) release(p *Process) {
	if !p.Init {
		c.mu.Lock()
		if c.execs[p.ID] == p {
			c.forgetLocked(p.ID)
		}
		c.mu.Unlock()
	}
	p.closeIO()
}

// forgetLocked drops an exec entry (or reservation) and gives its place
// in the budget back. Called with c.mu held.
func (c *Container) forgetLocked(execID string) {
	if _, ok := c.execs[execID]; ok {
		delete(c.execs, execID)
		c.policy.Budget.give(1)
	}
}
