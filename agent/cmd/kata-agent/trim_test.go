package main

import (
	"net"
	"testing"
	"time"
)

var sink [][]byte

func (q *quietTrim) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.trims
}

func TestQuietTrimAfterBurst(t *testing.T) {
	q := newQuietTrim(20*time.Millisecond, 1<<20)
	q.lastAlloc = heapAllocated()
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

	// A read with little allocated since: no trim.
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := q.count(); n != 0 {
		t.Fatalf("trims after a quiet read with nothing allocated = %d, want 0", n)
	}

	// A burst of allocation, then a read: one trim once quiet.
	for i := 0; i < 64; i++ {
		sink = append(sink, make([]byte, 64<<10))
	}
	sink = nil
	c.Read(buf) // EOF; still a read
	deadline := time.Now().Add(5 * time.Second)
	for q.count() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no trim after a burst and a quiet period (trims %d)", q.count())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Reads keep re-arming the timer; no allocation, no second trim.
	c.Read(buf)
	time.Sleep(100 * time.Millisecond)
	if n := q.count(); n != 1 {
		t.Errorf("trims = %d after an idle read, want 1", n)
	}
}
