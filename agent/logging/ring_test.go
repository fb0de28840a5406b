package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRingKeepsNewestLinesWithinLineBound(t *testing.T) {
	r := NewRing(3, 1<<20)
	for i := range 5 {
		fmt.Fprintf(r, "line %d\n", i)
	}
	lines, evicted := r.Lines()
	got := string(joinLines(lines))
	if got != "line 2\nline 3\nline 4\n" || evicted != 2 {
		t.Fatalf("lines %q evicted %d, want the last 3 and 2 evicted", got, evicted)
	}
}

func TestRingKeepsNewestLinesWithinByteBound(t *testing.T) {
	r := NewRing(100, 20)
	for i := range 6 {
		fmt.Fprintf(r, "line %d\n", i) // 7 bytes each: two fit in 20
	}
	lines, evicted := r.Lines()
	if got := string(joinLines(lines)); got != "line 4\nline 5\n" || evicted != 4 {
		t.Fatalf("lines %q evicted %d", got, evicted)
	}
	if n := len(r.Text()); n > 20 {
		t.Fatalf("holds %d bytes, bound 20", n)
	}
}

func TestRingCutsALineLargerThanItself(t *testing.T) {
	r := NewRing(10, 64)
	r.Write([]byte("small\n"))
	n, err := r.Write([]byte(strings.Repeat("x", 1000) + "\n"))
	if n != 1001 || err != nil {
		t.Fatalf("Write = %d, %v; want the whole line reported written", n, err)
	}
	text := r.Text()
	if len(text) > 64 || !strings.HasSuffix(text, truncMark) || strings.Contains(text, "small") {
		t.Fatalf("ring holds %q (%d bytes)", text, len(text))
	}
}

func TestRingWriteCopiesTheLine(t *testing.T) {
	r := NewRing(4, 1024)
	buf := []byte("first\n")
	r.Write(buf)
	copy(buf, "XXXXX\n") // slog reuses its buffer
	if got := r.Text(); got != "first\n" {
		t.Fatalf("ring holds %q after the caller reused its buffer", got)
	}
}

func TestRingTextIsValidUTF8(t *testing.T) {
	r := NewRing(4, 1024)
	r.Write([]byte("bad \xff\xfe byte\n"))
	if got := r.Text(); !utf8.ValidString(got) || !strings.Contains(got, "bad \uFFFD byte") {
		t.Fatalf("Text = %q", got)
	}
}

// Writers and readers at once, under -race: bounds hold at every read and
// each line read is whole.
func TestRingConcurrentWritersAndReaders(t *testing.T) {
	const maxLines, maxBytes = 50, 2000
	r := NewRing(maxLines, maxBytes)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				fmt.Fprintf(r, "writer %d line %d %s\n", w, i, strings.Repeat("y", i%40))
			}
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			lines, _ := r.Lines()
			total := 0
			for _, l := range lines {
				total += len(l)
				if !strings.HasPrefix(string(l), "writer ") || l[len(l)-1] != '\n' {
					t.Errorf("torn line %q", l)
					return
				}
			}
			if len(lines) > maxLines || total > maxBytes {
				t.Errorf("read %d lines, %d bytes: over the bounds", len(lines), total)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	readers.Wait()
	lines, evicted := r.Lines()
	if uint64(len(lines))+evicted != 8000 {
		t.Errorf("held %d + evicted %d != 8000 written", len(lines), evicted)
	}
}

// The ring takes the JSON handler's records as they are, one per line.
func TestRingBehindSlog(t *testing.T) {
	r := NewRing(0, 0)
	log := New(r, slog.LevelInfo)
	log.Info("hello", "k", 1)
	log.Debug("not kept")
	lines, _ := r.Lines()
	if len(lines) != 1 || !strings.Contains(string(lines[0]), `"msg":"hello"`) {
		t.Fatalf("lines %q", lines)
	}
}

func joinLines(lines [][]byte) []byte {
	var b []byte
	for _, l := range lines {
		b = append(b, l...)
	}
	return b
}

// The cost a log line pays for the ring, alone and behind the JSON
// handler with the switch (as kata-agent logs).
func BenchmarkRingWrite(b *testing.B) {
	r := NewRing(0, 0)
	line := []byte(`{"time":"2026-12-01T03:00:00.000000000Z","level":"WARN","msg":"request failed","method":"/grpc.AgentService/StartContainer","error":"container \"x\": not found"}` + "\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		r.Write(line)
	}
}

func BenchmarkLogLine(b *testing.B) {
	for _, withRing := range []bool{false, true} {
		name := "switch"
		if withRing {
			name = "ring+switch"
		}
		b.Run(name, func(b *testing.B) {
			sw := NewSwitch(io.Discard)
			var w io.Writer = sw
			if withRing {
				w = io.MultiWriter(NewRing(0, 0), sw)
			}
			log := New(w, slog.LevelInfo)
			b.ReportAllocs()
			for b.Loop() {
				log.Warn("request failed", "method", "/grpc.AgentService/StartContainer", "error", "not found")
				if sw.pending.Load() > maxQueuedLines/2 {
					sw.Flush(time.Second)
				}
			}
			sw.Flush(time.Second)
		})
	}
}

// A line that crosses the end of the buffer comes back whole.
func TestRingLineAcrossTheBufferEnd(t *testing.T) {
	r := NewRing(10, 10)
	for _, l := range []string{"ab\n", "cdefg\n", "hij\n"} {
		r.Write([]byte(l))
	}
	lines, evicted := r.Lines()
	if got := string(joinLines(lines)); got != "cdefg\nhij\n" || len(lines) != 2 || evicted != 1 {
		t.Fatalf("lines %q (%d) evicted %d", got, len(lines), evicted)
	}
	// The returned lines are copies: the ring's next writes leave them be.
	r.Write([]byte("0123456789"))
	if string(lines[1]) != "hij\n" {
		t.Fatalf("a returned line changed to %q", lines[1])
	}
}
