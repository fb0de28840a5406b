package wiring

import (
	"errors"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// quietTrim hands the heap's freed pages back to the kernel once the
// agent has been quiet for a moment after serving requests. Go's
// scavenger returns them only slowly, and the sandbox's own trim runs only
// when its last container is gone; in a pod with containers running, a
// burst of requests (creating a container, a big exec, reading its output)
// would otherwise keep its peak in the guest's memory.
//
// Every read from a client connection re-arms one timer: no goroutine and
// no polling at idle. The trim (a forced collection, then the return of
// every free page) runs only when enough was allocated since the last
// one, so a runtime's periodic health check costs nothing. (Counting only
// freed pages instead misses the garbage of the burst, which no
// collection has freed yet: with a container running the agent then
// idled at 5.8 MiB RssAnon instead of 4.1-4.4.) Before the runtime's first
// collection of its own it waits for more (firstMinAlloc): forcing the
// first one right after boot costs the GC's structures, 0.5-0.9 MiB
// RssAnon at idle, but waiting for the runtime let a runtime polling
// GetMetrics (about 250 KiB each) grow the heap to the GC's 4 MiB
// minimum: 3.6 MiB more guest memory used after a dozen polls.
type quietTrim struct {
	delay         time.Duration
	minAlloc      uint64 // bytes allocated since the last trim that make one worth it
	firstMinAlloc uint64 // the same before the runtime has collected once

	allocated func() (bytes uint64, collections uint32) // heapAllocated; tests replace it
	release   func()                                    // debug.FreeOSMemory; tests replace it

	mu        sync.Mutex
	timer     *time.Timer
	lastAlloc uint64
	trims     int
}

const (
	quietTrimDelay         = time.Second
	quietTrimMinAlloc      = 512 << 10
	quietTrimFirstMinAlloc = 1 << 20
)

// newQuietTrim counts allocation from now: what the agent's start
// allocated is mostly the live heap.
func newQuietTrim(delay time.Duration, minAlloc, firstMinAlloc uint64) *quietTrim {
	q := &quietTrim{delay: delay, minAlloc: minAlloc, firstMinAlloc: firstMinAlloc,
		allocated: heapAllocated, release: debug.FreeOSMemory}
	q.lastAlloc, _ = q.allocated()
	q.timer = time.AfterFunc(time.Hour, q.fire)
	q.timer.Stop()
	return q
}

// poke notes activity: the trim is considered delay after the last poke.
func (q *quietTrim) poke() { q.timer.Reset(q.delay) }

// heapAllocated is the heap's cumulative allocation and the number of
// collections so far. ReadMemStats stops
// the world, which on the agent's small heap is microseconds; it runs at
// most once per quiet period. (runtime/metrics would add 36 kB to the
// binary.)
func heapAllocated() (uint64, uint32) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc, m.NumGC
}

func (q *quietTrim) fire() {
	q.mu.Lock()
	defer q.mu.Unlock()
	alloc, gcs := q.allocated()
	need := q.minAlloc
	if gcs == 0 {
		need = q.firstMinAlloc
	}
	if alloc-q.lastAlloc < need {
		return
	}
	q.release()
	q.lastAlloc, _ = q.allocated()
	q.trims++
}

// listener wraps l so that reads on its connections poke q.
func (q *quietTrim) listener(l net.Listener) net.Listener { return trimListener{l, q} }

type trimListener struct {
	net.Listener
	q *quietTrim
}

func (l trimListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return trimConn{c, l.q}, nil
}

type trimConn struct {
	net.Conn
	q *quietTrim
}

// SyscallConn passes the connection's descriptor on, so that the server
// can gather a frame's pieces into one write (agent/server/coalesce.go);
// reads through it would bypass the poke, and the server makes none.
func (c trimConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

func (c trimConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.q.poke()
	return n, err
}
