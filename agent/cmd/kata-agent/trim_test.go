package main

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func (q *quietTrim) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.trims
}

func TestQuietTrimAfterBurst(t *testing.T) {
	q := newQuietTrim(20*time.Millisecond, 1<<20)
	var free atomic.Uint64
	q.free = free.Load
	q.release = func() { free.Store(0) }

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

	// A read with little freed (at boot no collection has run): no trim.
	free.Store(64 << 10)
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := q.count(); n != 0 {
		t.Fatalf("trims after a quiet read with 64 KiB freed = %d, want 0", n)
	}

	// A burst left 4 MiB freed; a read, then quiet: one trim.
	free.Store(4 << 20)
	c.Read(buf) // EOF; still a read
	deadline := time.Now().Add(5 * time.Second)
	for q.count() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no trim after a burst and a quiet period (trims %d)", q.count())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Reads keep re-arming the timer; nothing freed since, no second trim.
	c.Read(buf)
	time.Sleep(100 * time.Millisecond)
	if n := q.count(); n != 1 {
		t.Errorf("trims = %d after an idle read, want 1", n)
	}
}

func TestHeapFreeUnreturnedIsSane(t *testing.T) {
	if f := heapFreeUnreturned(); f > 1<<40 {
		t.Errorf("heapFreeUnreturned = %d: underflow", f)
	}
}
