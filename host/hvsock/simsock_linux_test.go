package hvsock

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("HVSOCK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// goroutineBaseline returns a check that the goroutine count came back down.
func goroutineBaseline(t *testing.T) func() {
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		var now int
		for i := 0; i < 200; i++ {
			now = runtime.NumGoroutine()
			if now <= before {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Errorf("goroutines: %d before, %d after\n%s", before, now, buf[:n])
	}
}

// simSock is the guest end of one stream, speaking the vsock protocol the way
// a Linux guest does: it consumes what it receives at once and returns credit
// when half its window is used.
type simSock struct {
	g           *simGuest
	local, peer uint32 // guest port, host port
	bufAlloc    uint32
	hold        bool // do not consume (no credit returned) until release

	mu           sync.Mutex
	cond         *sync.Cond
	in           []byte // received data not yet taken by the test
	rcvd         uint32 // payload bytes received in total
	fwdCnt       uint32
	lastFwdSent  uint32
	peerBufAlloc uint32
	peerFwdCnt   uint32
	txCnt        uint32
	peerShut     uint32
	rst          bool
	ops          map[uint16]int
}

func newSimSock(g *simGuest, local, peer, bufAlloc uint32) *simSock {
	s := &simSock{g: g, local: local, peer: peer, bufAlloc: bufAlloc, ops: map[uint16]int{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *simSock) hdr(op uint16) header {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastFwdSent = s.fwdCnt
	return header{SrcPort: s.local, DstPort: s.peer, Op: op, BufAlloc: s.bufAlloc, FwdCnt: s.fwdCnt}
}

// handle applies one packet from the backend.
func (s *simSock) handle(p simPkt) {
	s.mu.Lock()
	s.ops[p.h.Op]++
	s.peerBufAlloc, s.peerFwdCnt = p.h.BufAlloc, p.h.FwdCnt
	var update bool
	switch p.h.Op {
	case opRW:
		if unread := s.rcvd - s.fwdCnt; unread+uint32(len(p.payload)) > s.bufAlloc {
			s.g.t.Errorf("backend overran guest credit: %d unread + %d > %d", unread, len(p.payload), s.bufAlloc)
		}
		s.in = append(s.in, p.payload...)
		s.rcvd += uint32(len(p.payload))
		if !s.hold {
			s.fwdCnt += uint32(len(p.payload))
			update = s.fwdCnt-s.lastFwdSent >= s.bufAlloc/2
		}
	case opCreditRequest:
		update = true
	case opShutdown:
		s.peerShut |= p.h.Flags
	case opRst:
		s.rst = true
	}
	s.cond.Broadcast()
	s.mu.Unlock()
	if update {
		s.g.sendPkt(s.hdr(opCreditUpdate), nil)
	}
}

// release consumes everything held so far and returns the credit.
func (s *simSock) release() {
	s.mu.Lock()
	s.fwdCnt = s.rcvd
	s.mu.Unlock()
	s.g.sendPkt(s.hdr(opCreditUpdate), nil)
}

func (s *simSock) credit() uint32 {
	return s.peerBufAlloc - (s.txCnt - s.peerFwdCnt)
}

// write sends data respecting the backend's credit.
func (s *simSock) write(data []byte) {
	for len(data) > 0 {
		s.mu.Lock()
		deadline := time.Now().Add(10 * time.Second)
		for s.credit() == 0 && !s.rst {
			if time.Now().After(deadline) {
				s.mu.Unlock()
				s.g.t.Errorf("no credit from backend for 10s")
				return
			}
			waitTimeout(s.cond, 50*time.Millisecond)
		}
		if s.rst {
			s.mu.Unlock()
			return
		}
		n := min(len(data), maxPayload, int(s.credit()))
		s.txCnt += uint32(n)
		s.mu.Unlock()
		s.g.sendPkt(s.hdr(opRW), data[:n])
		data = data[n:]
	}
}

// waitFor blocks until cond holds (checked under s.mu) or the timeout passes.
func (s *simSock) waitFor(what string, d time.Duration, cond func() bool) {
	s.g.t.Helper()
	deadline := time.Now().Add(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			s.g.t.Fatalf("timed out waiting for %s", what)
		}
		waitTimeout(s.cond, 20*time.Millisecond)
	}
}

// waitTimeout waits on c (whose lock is held) for at most d.
func waitTimeout(c *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
	c.Wait()
	t.Stop()
}

// router hands each received packet to its simSock; packets for no known
// stream go to the returned channel.
type router struct {
	mu    sync.Mutex
	socks map[[2]uint32]*simSock
	other chan simPkt
	done  chan struct{}
}

func (g *simGuest) route() *router {
	r := &router{socks: map[[2]uint32]*simSock{}, other: make(chan simPkt, 1024), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			select {
			case p := <-g.pkts:
				r.mu.Lock()
				s := r.socks[[2]uint32{p.h.DstPort, p.h.SrcPort}]
				r.mu.Unlock()
				if s != nil {
					s.handle(p)
				} else {
					r.other <- p
				}
			case <-g.stopRx:
				return
			}
		}
	}()
	return r
}

func (r *router) add(s *simSock) {
	r.mu.Lock()
	r.socks[[2]uint32{s.local, s.peer}] = s
	r.mu.Unlock()
}

func (r *router) expect(t testing.TB, what string, match func(simPkt) bool) simPkt {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-r.other:
			if match(p) {
				return p
			}
			t.Logf("%s: skipping %s %+v", what, opName(p.h.Op), p.h)
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
