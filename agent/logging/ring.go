package logging

import (
	"bytes"
	"sync"
)

// Default bounds of the agent's recent-lines ring: enough for the start-up
// and a few dozen container lifecycles at the info level, small against the
// agent's memory budget.
const (
	DefaultRingLines = 1024
	DefaultRingBytes = 64 << 10
)

// Ring keeps the most recent log lines in memory, bounded both by a number
// of lines and by their total size, so that diagnostics can fetch them
// from the agent when no host was reading its log. Write is cheap and
// never waits on anything but a short critical section (a slot update):
// the copy of the line is made before the lock is taken, and readers copy
// only slice headers under it.
type Ring struct {
	maxLines, maxBytes int

	mu      sync.Mutex
	lines   [][]byte // circular; lines[(start+i)%maxLines] for i < n
	start   int
	n       int
	size    int    // bytes held
	evicted uint64 // lines pushed out since start
}

// NewRing returns a ring holding at most maxLines lines and maxBytes bytes
// (values below 1 take the defaults).
func NewRing(maxLines, maxBytes int) *Ring {
	if maxLines < 1 {
		maxLines = DefaultRingLines
	}
	if maxBytes < 1 {
		maxBytes = DefaultRingBytes
	}
	return &Ring{maxLines: maxLines, maxBytes: maxBytes, lines: make([][]byte, maxLines)}
}

// truncMark ends a line cut to fit the ring.
const truncMark = "...(truncated)\n"

// Write implements io.Writer; the JSON handler calls it once per record.
// A line larger than the whole ring is kept cut to the byte bound. It
// always succeeds.
func (r *Ring) Write(p []byte) (int, error) {
	var line []byte
	if len(p) > r.maxBytes {
		keep := r.maxBytes - len(truncMark)
		if keep < 0 {
			keep = 0
		}
		line = make([]byte, 0, keep+len(truncMark))
		line = append(append(line, p[:keep]...), truncMark...)
		line = line[:min(len(line), r.maxBytes)]
	} else {
		line = append([]byte(nil), p...)
	}
	r.mu.Lock()
	for r.n > 0 && (r.n == r.maxLines || r.size+len(line) > r.maxBytes) {
		r.size -= len(r.lines[r.start])
		r.lines[r.start] = nil
		r.start = (r.start + 1) % r.maxLines
		r.n--
		r.evicted++
	}
	r.lines[(r.start+r.n)%r.maxLines] = line
	r.n++
	r.size += len(line)
	r.mu.Unlock()
	return len(p), nil
}

// Lines returns the lines held, oldest first, and how many older lines
// were pushed out since the agent started. The lines are shared and must
// not be modified.
func (r *Ring) Lines() (lines [][]byte, evicted uint64) {
	r.mu.Lock()
	out := make([][]byte, r.n)
	for i := range out {
		out[i] = r.lines[(r.start+i)%r.maxLines]
	}
	evicted = r.evicted
	r.mu.Unlock()
	return out, evicted
}

// Text returns the lines held, oldest first, as one text with invalid
// UTF-8 replaced (the protocol carries it as a string).
func (r *Ring) Text() string {
	lines, _ := r.Lines()
	return string(bytes.ToValidUTF8(bytes.Join(lines, nil), []byte("\uFFFD")))
}
