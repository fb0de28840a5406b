package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type failingWriter struct {
	mu     sync.Mutex
	closed bool
}

func (f *failingWriter) Write([]byte) (int, error) { return 0, errors.New("peer gone") }
func (f *failingWriter) Close() error              { f.mu.Lock(); f.closed = true; f.mu.Unlock(); return nil }

type bufCloser struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *bufCloser) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}
func (b *bufCloser) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.Buffer.String() }
func (*bufCloser) Close() error     { return nil }

func flush(t *testing.T, sw *Switch) {
	t.Helper()
	if !sw.Flush(5 * time.Second) {
		t.Fatal("log lines still queued after 5s")
	}
}

func TestSwitchFallsBackWhenPeerFails(t *testing.T) {
	console := &bufCloser{}
	sw := NewSwitch(console)
	log := New(sw, slog.LevelInfo)

	remote := &bufCloser{}
	sw.Attach(remote)
	log.Info("to remote")
	flush(t, sw)
	if remote.String() == "" || console.String() != "" {
		t.Fatalf("record went to console %q instead of remote %q", console.String(), remote.String())
	}

	bad := &failingWriter{}
	sw.Attach(bad)
	log.Info("after failure", "k", 1)
	flush(t, sw)
	bad.mu.Lock()
	closed := bad.closed
	bad.mu.Unlock()
	if !closed {
		t.Error("failed destination was not closed")
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(console.String()), &rec); err != nil {
		t.Fatalf("console record is not JSON: %v: %q", err, console.String())
	}
	if rec["msg"] != "after failure" {
		t.Errorf("console record msg = %v", rec["msg"])
	}
}

// stuckWriter is a host that stopped reading the log port: its writes
// block until it is closed.
type stuckWriter struct {
	once   sync.Once
	closed chan struct{}
}

func (s *stuckWriter) Write([]byte) (int, error) { <-s.closed; return 0, errors.New("closed") }
func (s *stuckWriter) Close() error              { s.once.Do(func() { close(s.closed) }); return nil }

func TestSwitchNeverBlocksOnAStuckHost(t *testing.T) {
	console := &bufCloser{}
	sw := NewSwitch(console)
	log := New(sw, slog.LevelInfo)
	stuck := &stuckWriter{closed: make(chan struct{})}
	sw.Attach(stuck)

	const lines = 5000
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		for i := range lines {
			log.Info("line", "i", i, "pad", strings.Repeat("x", 100))
		}
		done <- time.Since(start)
	}()
	select {
	case d := <-done:
		t.Logf("%d lines logged in %s with the host not reading; %d dropped", lines, d, sw.Dropped())
	case <-time.After(10 * time.Second):
		t.Fatal("logging blocked on a log destination that does not read")
	}
	dropped := sw.Dropped()
	if dropped == 0 || dropped >= lines {
		t.Fatalf("dropped %d of %d lines, want some dropped and the queue kept", dropped, lines)
	}
	if sw.Flush(100 * time.Millisecond) {
		t.Fatal("Flush reported success while the destination is stuck")
	}

	// A new host connection replaces the stuck one: the queue drains to
	// it, logging recovers and the drop count is reported.
	remote := &bufCloser{}
	sw.Attach(remote)
	flush(t, sw)
	log.Info("recovered")
	flush(t, sw)
	out := remote.String()
	if !strings.HasSuffix(out, "\"msg\":\"recovered\"}\n") {
		t.Fatalf("the new destination did not get the next line: ...%q", out[max(0, len(out)-300):])
	}
	var report map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line is not JSON: %v: %.200q", err, l)
		}
		if _, ok := rec["dropped"]; ok {
			report = rec
		}
	}
	// The line blocked in the stuck writer went to the console when the
	// stuck writer was closed; the report follows on the new destination
	// or the console, whichever took the next line.
	if report == nil {
		for _, l := range strings.Split(strings.TrimSpace(console.String()), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil {
				if _, ok := rec["dropped"]; ok {
					report = rec
				}
			}
		}
	}
	if report == nil {
		t.Fatal("no line reports the dropped count")
	}
	if got := uint64(report["dropped_total"].(float64)); got != sw.Dropped() {
		t.Errorf("reported dropped_total %d, counter %d", got, sw.Dropped())
	}
	if report["level"] != "WARN" {
		t.Errorf("report level = %v", report["level"])
	}
}
