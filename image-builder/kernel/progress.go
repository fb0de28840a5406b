package kernel

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Meter counts the objects a kbuild run compiles, from kbuild's quiet
// output ("  CC      mm/rmap.o"). It is an io.Writer for make's output.
type Meter struct {
	mu      sync.Mutex
	objects int
	last    string
	partial []byte
}

// maxLine bounds the unterminated tail kept between writes: kbuild's lines
// are short, and a runaway line must not grow memory.
const maxLine = 4096

func (m *Meter) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(m.partial)+len(p) <= maxLine {
				m.partial = append(m.partial, p...)
			} else {
				m.partial = m.partial[:0]
			}
			break
		}
		line := p[:i]
		if len(m.partial) > 0 {
			line = append(m.partial, line...)
			m.partial = m.partial[:0]
		}
		m.line(string(line))
		p = p[i+1:]
	}
	return n, nil
}

// line counts one compiled object: "CC" or "AS" (also "CC [M]") naming
// a .o file. Host tools (HOSTCC), links and generated files are not
// objects of the kernel proper and are left out of the count.
func (m *Meter) line(s string) {
	f := strings.Fields(s)
	if len(f) < 2 || (f[0] != "CC" && f[0] != "AS") {
		return
	}
	obj := f[len(f)-1]
	if !strings.HasSuffix(obj, ".o") {
		return
	}
	m.objects++
	m.last = obj
}

// Objects returns how many objects were compiled so far and the last one.
func (m *Meter) Objects() (int, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.objects, m.last
}

// Estimate is what an earlier build of the same kind took; zero when
// there is none.
type Estimate struct {
	Objects  int
	Duration time.Duration
}

// remaining estimates the time left once objects of e.Objects are built
// after elapsed. Early on the object rate says little (the first objects
// are small), so the last build's duration minus the elapsed time is used
// until 5% of the objects are built.
func (e Estimate) remaining(objects int, elapsed time.Duration) (time.Duration, bool) {
	if e.Objects <= 0 || e.Duration <= 0 || objects >= e.Objects {
		return 0, false
	}
	frac := float64(objects) / float64(e.Objects)
	if frac < 0.05 {
		if r := e.Duration - elapsed; r > 0 {
			return r, true
		}
		return 0, false
	}
	return time.Duration(float64(elapsed) * (1 - frac) / frac), true
}

// Reporter prints a running build's progress: on a terminal one line
// rewritten in place at every Tick, otherwise (CI logs) a plain line every
// Interval. The clock is injectable for tests.
type Reporter struct {
	W        io.Writer
	TTY      bool
	Interval time.Duration // between plain lines; 30s when zero
	Now      func() time.Time
	Count    func() (objects int, last string)
	Expect   Estimate

	start, printed time.Time
	drawn          bool
}

// DefaultInterval is the time between plain progress lines.
const DefaultInterval = 30 * time.Second

// Begin starts the clock and says what the estimate is based on.
func (r *Reporter) Begin() {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Interval <= 0 {
		r.Interval = DefaultInterval
	}
	r.start = r.Now()
	r.printed = r.start
	if r.Expect.Objects > 0 {
		fmt.Fprintf(r.W, "    last build: %d objects in %s\n", r.Expect.Objects, round(r.Expect.Duration))
	} else {
		fmt.Fprintf(r.W, "    no earlier build of this kind recorded: no estimate\n")
	}
}

// Tick prints the progress when it is due: always on a terminal, every
// Interval otherwise.
func (r *Reporter) Tick() {
	now := r.Now()
	if r.TTY {
		fmt.Fprintf(r.W, "\r\x1b[K    %s", r.status(now))
		r.drawn = true
		return
	}
	if now.Sub(r.printed) < r.Interval {
		return
	}
	r.printed = now
	fmt.Fprintf(r.W, "    %s\n", r.status(now))
}

// End clears the terminal line so that what follows starts clean.
func (r *Reporter) End() {
	if r.TTY && r.drawn {
		fmt.Fprint(r.W, "\r\x1b[K")
	}
}

// status is one progress line: the objects built, against the last
// build's count when known, the elapsed time and the time left.
func (r *Reporter) status(now time.Time) string {
	n, _ := r.Count()
	elapsed := now.Sub(r.start)
	total := r.Expect.Objects
	switch {
	case total <= 0:
		return fmt.Sprintf("%d objects, %s elapsed", n, round(elapsed))
	case n >= total:
		return fmt.Sprintf("%d objects (last build: %d), %s elapsed, finishing", n, total, round(elapsed))
	}
	s := fmt.Sprintf("%d/%d objects (%d%%), %s elapsed", n, total, n*100/total, round(elapsed))
	if left, ok := r.Expect.remaining(n, elapsed); ok {
		s += ", about " + round(left).String() + " left"
	}
	return s
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }
