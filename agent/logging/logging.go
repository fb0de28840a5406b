// Package logging builds the agent's JSON logger. Logs go to the console,
// or, with agent.log_vport, to whichever host connection is attached to
// that vsock port (the console keeps them while none is).
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// New returns a JSON logger at level writing to w.
func New(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// Bounds of the queue between the agent and its log destination. A host
// that stops reading the log port fills it within a moment; lines are then
// dropped and counted rather than block PID 1.
const (
	maxQueuedLines = 512
	maxQueuedBytes = 128 << 10
)

// Switch is a writer whose destination can change while logging goes on.
// Write never blocks on the destination: lines are queued (bounded) and a
// single goroutine writes them out in order. When the queue is full, lines
// are dropped and counted, and the count is logged once the destination
// takes lines again. A failed write to the current destination drops it
// and falls back, so a host that disconnects never loses the agent's logs.
type Switch struct {
	mu       sync.Mutex
	fallback io.Writer
	current  io.WriteCloser

	queue   chan []byte
	queued  atomic.Int64  // bytes in queue
	dropped atomic.Uint64 // lines dropped since start
	pending atomic.Int64  // lines accepted and not yet written
	idle    chan struct{} // receives after a write leaves nothing pending
}

// NewSwitch writes to fallback until Attach is called.
func NewSwitch(fallback io.Writer) *Switch {
	s := &Switch{
		fallback: fallback,
		queue:    make(chan []byte, maxQueuedLines),
		idle:     make(chan struct{}, 1),
	}
	go s.run()
	return s
}

// Attach makes w the destination, closing the previous one (which ends a
// write blocked on it).
func (s *Switch) Attach(w io.WriteCloser) {
	s.mu.Lock()
	old := s.current
	s.current = w
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
}

// Write implements io.Writer. slog calls it once per record. It queues a
// copy of p, or drops it when the queue is full; it always reports success
// so that logging never fails the caller.
func (s *Switch) Write(p []byte) (int, error) {
	n := int64(len(p))
	if s.queued.Add(n) > maxQueuedBytes {
		s.queued.Add(-n)
		s.dropped.Add(1)
		return len(p), nil
	}
	s.pending.Add(1)
	select {
	case s.queue <- append([]byte(nil), p...):
	default:
		s.queued.Add(-n)
		s.pending.Add(-1)
		s.dropped.Add(1)
	}
	return len(p), nil
}

// Dropped is the number of lines dropped because the destination did not
// keep up.
func (s *Switch) Dropped() uint64 { return s.dropped.Load() }

// Flush waits until every queued line is written, at most timeout. PID 1
// calls it before it exits or powers off.
func (s *Switch) Flush(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for s.pending.Load() > 0 {
		select {
		case <-s.idle:
		case <-t.C:
			return false
		}
	}
	return true
}

func (s *Switch) run() {
	var reported uint64
	for line := range s.queue {
		s.queued.Add(-int64(len(line)))
		s.write(line)
		// The destination takes lines again: say how many it missed.
		if d := s.dropped.Load(); d != reported {
			s.write(dropReport(d-reported, d))
			reported = d
		}
		if s.pending.Add(-1) == 0 {
			select {
			case s.idle <- struct{}{}:
			default:
			}
		}
	}
}

// write sends one line to the destination, falling back to the console
// when the destination fails.
func (s *Switch) write(line []byte) {
	s.mu.Lock()
	dst := s.current
	s.mu.Unlock()
	if dst != nil {
		if _, err := dst.Write(line); err == nil {
			return
		}
		s.mu.Lock()
		if s.current == dst {
			s.current = nil
		}
		s.mu.Unlock()
		dst.Close()
	}
	_, _ = s.fallback.Write(line)
}

// dropReport is a log line in the JSON handler's shape.
func dropReport(n, total uint64) []byte {
	return fmt.Appendf(nil, `{"time":%q,"level":"WARN","msg":"log destination fell behind; lines dropped","dropped":%d,"dropped_total":%d}`+"\n",
		time.Now().Format(time.RFC3339Nano), n, total)
}
