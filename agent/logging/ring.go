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
// from the agent when no host was reading its log. The lines live in one
// circular byte buffer allocated up front: Write allocates nothing and
// holds the lock only to copy the line in; a reader copies the bytes out
// under it (at most the byte bound).
type Ring struct {
	maxLines, maxBytes int

	mu      sync.Mutex
	buf     []byte // circular, maxBytes long
	starts  []int  // circular, maxLines long: offset in buf of each line
	lens    []int
	first   int    // index in starts of the oldest line
	n       int    // lines held
	size    int    // bytes held
	next    int    // offset in buf of the next line
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
	return &Ring{maxLines: maxLines, maxBytes: maxBytes, buf: make([]byte, maxBytes),
		starts: make([]int, maxLines), lens: make([]int, maxLines)}
}

// truncMark ends a line cut to fit the ring.
const truncMark = "...(truncated)\n"

// Write implements io.Writer; the JSON handler calls it once per record.
// A line larger than the whole ring is kept cut to the byte bound. It
// always succeeds.
func (r *Ring) Write(p []byte) (int, error) {
	head, mark := p, ""
	if len(p) > r.maxBytes {
		mark = truncMark
		if len(mark) > r.maxBytes {
			mark = mark[:r.maxBytes]
		}
		head = p[:r.maxBytes-len(mark)]
	}
	n := len(head) + len(mark)
	r.mu.Lock()
	for r.n > 0 && (r.n == r.maxLines || r.size+n > r.maxBytes) {
		r.size -= r.lens[r.first]
		r.first = (r.first + 1) % r.maxLines
		r.n--
		r.evicted++
	}
	if r.n == 0 {
		r.next = 0 // keeps a lone line in one piece
	}
	slot := (r.first + r.n) % r.maxLines
	r.starts[slot], r.lens[slot] = r.next, n
	r.next = r.put(r.put(r.next, head), []byte(mark))
	r.n++
	r.size += n
	r.mu.Unlock()
	return len(p), nil
}

// put copies b into the buffer at off, wrapping at its end, and returns
// the offset after it. Called with mu held.
func (r *Ring) put(off int, b []byte) int {
	c := copy(r.buf[off:], b)
	if c < len(b) {
		c = copy(r.buf, b[c:])
		return c % r.maxBytes
	}
	return (off + c) % r.maxBytes
}

// Lines returns copies of the lines held, oldest first, and how many
// older lines were pushed out since the agent started.
func (r *Ring) Lines() (lines [][]byte, evicted uint64) {
	r.mu.Lock()
	all := make([]byte, 0, r.size)
	lens := make([]int, r.n)
	for i := range r.n {
		slot := (r.first + i) % r.maxLines
		off, n := r.starts[slot], r.lens[slot]
		end := min(off+n, r.maxBytes)
		all = append(all, r.buf[off:end]...)
		all = append(all, r.buf[:n-(end-off)]...)
		lens[i] = n
	}
	evicted = r.evicted
	r.mu.Unlock()
	lines = make([][]byte, len(lens))
	for i, n := range lens {
		lines[i], all = all[:n:n], all[n:]
	}
	return lines, evicted
}

// Text returns the lines held, oldest first, as one text with invalid
// UTF-8 replaced (the protocol carries it as a string).
func (r *Ring) Text() string {
	lines, _ := r.Lines()
	return string(bytes.ToValidUTF8(bytes.Join(lines, nil), []byte("\uFFFD")))
}
