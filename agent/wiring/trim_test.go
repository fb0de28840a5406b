package wiring

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func (q *quietTrim) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.trims
}

func TestQuietTrimAfterBurst(t *testing.T) {
	q := newQuietTrim(20*time.Millisecond, 1<<20, 8<<20)
	var alloc atomic.Uint64
	var gcs atomic.Uint32
	q.allocated = func() (uint64, uint32) { return alloc.Load(), gcs.Load() }
	q.release = func() {}
	q.lastAlloc = 0 // as if created with these counters

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := q.listener(l)
	defer tl.Close()
	go func() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := tl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// A read with little allocated: no trim.
	alloc.Store(64 << 10)
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := q.count(); n != 0 {
		t.Fatalf("trims after a quiet read with 64 KiB allocated = %d, want 0", n)
	}

	// 4 MiB allocated before any collection: below the first trim's
	// threshold, no trim either.
	alloc.Store(4 << 20)
	c.Read(buf)
	time.Sleep(100 * time.Millisecond)
	if n := q.count(); n != 0 {
		t.Fatalf("trims before the runtime's first collection, 4 MiB allocated = %d, want 0", n)
	}

	// Once the runtime collects, a burst then a quiet read: one trim.
	gcs.Store(1)
	c.Read(buf) // EOF; still a read
	waitTrims(t, q, 1)
	// Reads keep re-arming the timer; nothing allocated since, no second trim.
	c.Read(buf)
	time.Sleep(100 * time.Millisecond)
	if n := q.count(); n != 1 {
		t.Errorf("trims = %d after an idle read, want 1", n)
	}
}

func waitTrims(t *testing.T, q *quietTrim, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for q.count() != want {
		if time.Now().After(deadline) {
			t.Fatalf("trims = %d, want %d", q.count(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Before the runtime's first collection a trim waits for firstMinAlloc:
// enough garbage (a runtime polling GetMetrics) to outweigh what the
// first collection costs.
func TestQuietTrimBeforeFirstCollection(t *testing.T) {
	q := newQuietTrim(time.Hour, 1<<20, 8<<20)
	var alloc atomic.Uint64
	q.allocated = func() (uint64, uint32) { return alloc.Load(), 0 }
	q.release = func() {}
	q.lastAlloc = 0
	alloc.Store(7 << 20)
	q.fire()
	if n := q.count(); n != 0 {
		t.Fatalf("trims with 7 MiB allocated before any collection = %d, want 0", n)
	}
	alloc.Store(8 << 20)
	q.fire()
	if n := q.count(); n != 1 {
		t.Fatalf("trims with 8 MiB allocated before any collection = %d, want 1", n)
	}
}

// Allocation counts from the trim's creation: the agent's start is
// mostly its live heap.
func TestQuietTrimCountsFromCreation(t *testing.T) {
	q := newQuietTrim(time.Hour, 1, 1)
	base, _ := heapAllocated()
	if q.lastAlloc == 0 || q.lastAlloc > base {
		t.Fatalf("lastAlloc %d at creation, want the heap's allocation then (<= %d, > 0)", q.lastAlloc, base)
	}
}

func TestHeapAllocatedGrows(t *testing.T) {
	before, _ := heapAllocated()
	sink = make([]byte, 1<<20)
	if after, _ := heapAllocated(); after < before+1<<20 {
		t.Errorf("heapAllocated %d -> %d after allocating 1 MiB", before, after)
	}
}

var sink []byte

// The trim's connection wrapper keeps the descriptor reachable: the
// server gathers a reply's pieces into one write through it.
func TestTrimConnPassesSyscallConn(t *testing.T) {
	l, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	q := newQuietTrim(time.Hour, 1, 1)
	go func() {
		c, err := net.Dial("unix", l.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c, err := q.listener(l).Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatal("accepted connection hides SyscallConn")
	}
	if _, err := sc.SyscallConn(); err != nil {
		t.Fatalf("SyscallConn: %v", err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := (trimConn{a, q}).SyscallConn(); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("pipe: err = %v, want ErrUnsupported", err)
	}
}
