// Package metrics renders the agent's GetMetrics answer: the Prometheus
// text exposition format (version 0.0.4) describing the agent process, the
// guest and each container's cgroup.
//
// The families the upstream agent exports (kata_agent_* and kata_guest_*,
// see its src/agent/src/metrics.rs) keep their names, label names, items
// and units, so that dashboards built on them work unchanged; so do the
// kata_agent_process_* families the runtime's dashboards read. Families of
// our own (kata_agent_rss_bytes, kata_guest_cpu_seconds_total,
// kata_container_*, ...) come in addition.
//
// The text is written by hand rather than with a Prometheus client library:
// what the agent links, the guest pays for in memory, and a client library
// would also keep registries and goroutines alive between scrapes. Nothing
// is read until Gather is called.
package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Containers lists the running containers' cgroups: container id → cgroup
// path relative to the cgroup v2 mount (for example "/kata/abc").
type Containers interface {
	CgroupPaths() map[string]string
}

// Options configure a Collector. The zero value reads the real /proc and
// /sys/fs/cgroup and reports no containers.
type Options struct {
	// ProcRoot is where procfs is mounted. Default "/proc".
	ProcRoot string
	// CgroupRoot is where the cgroup v2 hierarchy is mounted. Default
	// "/sys/fs/cgroup".
	CgroupRoot string
	// Containers lists container cgroups; nil reports none.
	Containers Containers
	// Goroutines counts the agent's goroutines. Default runtime.NumGoroutine.
	Goroutines func() int
	// GoMemory reads the Go runtime's memory statistics. Default
	// runtime.ReadMemStats.
	GoMemory func(*runtime.MemStats)
}

// Collector gathers metrics on demand.
type Collector struct {
	proc       string
	cgroup     string
	containers Containers
	goroutines func() int
	goMemory   func(*runtime.MemStats)
	pageSize   uint64
	// statfs is unix.Statfs on Linux; tests replace it.
	statfs statfsFunc
	// scrapes counts Gather calls (kata_agent_scrape_count).
	scrapes atomic.Uint64
	// btime is the boot time once read (0: not yet): it never changes, so
	// /proc/stat is not read a second time per scrape for it.
	btime atomic.Uint64
	// lastSize is the previous exposition's length: the next one is
	// written into a buffer of about that size instead of one grown by
	// doubling, which allocated twice the text per scrape.
	lastSize atomic.Int64
}

// userHZ is the unit of /proc/stat times: the kernel exports them in
// USER_HZ ticks, which is 100 on every Linux architecture.
const userHZ = 100

// Bounds on what one read may return: procfs files are small, and a bound
// keeps a broken file from exhausting memory.
const (
	maxSmallFile = 64 << 10
	maxStatFile  = 4 << 20
)

// New returns a Collector.
func New(opts Options) *Collector {
	c := &Collector{proc: opts.ProcRoot, cgroup: opts.CgroupRoot, containers: opts.Containers, goroutines: opts.Goroutines, goMemory: opts.GoMemory}
	if c.proc == "" {
		c.proc = "/proc"
	}
	if c.cgroup == "" {
		c.cgroup = "/sys/fs/cgroup"
	}
	if c.goroutines == nil {
		c.goroutines = runtime.NumGoroutine
	}
	if c.goMemory == nil {
		c.goMemory = runtime.ReadMemStats
	}
	if c.pageSize == 0 {
		c.pageSize = uint64(os.Getpagesize())
	}
	return c
}

// Gather returns the exposition text. A section that cannot be read is left
// out and reported in the error, so the caller may still return the rest;
// a container whose cgroup is gone (it just exited) is skipped silently.
func (c *Collector) Gather() (string, error) {
	w := &writer{}
	if n := c.lastSize.Load(); n > 0 {
		w.b.Grow(int(n + n/8))
	}
	w.family("kata_agent_scrape_count", "counter", "Metrics scrape count.")
	w.sample("kata_agent_scrape_count", formatUint(c.scrapes.Add(1)))
	var errs []error
	for _, section := range []struct {
		what string
		fn   func(*writer) error
	}{
		{"agent process metrics", c.agent},
		{"guest load metrics", c.load},
		{"guest disk metrics", c.diskstats},
		{"guest vmstat metrics", c.vmstat},
		{"guest CPU metrics", c.cpu},
		{"guest network device metrics", c.netdev},
		{"guest memory metrics", c.meminfo},
		{"guest filesystem metrics", c.filesystems},
	} {
		if err := section.fn(w); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", section.what, err))
		}
	}
	c.containerMetrics(w)
	c.lastSize.Store(int64(w.b.Len()))
	return w.b.String(), errors.Join(errs...)
}

// writer emits families in the text format: HELP and TYPE once, then the
// family's samples together.
type writer struct{ b strings.Builder }

func (w *writer) family(name, typ, help string) {
	fmt.Fprintf(&w.b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// sample writes one line; labels alternate names and values.
func (w *writer) sample(name, value string, labels ...string) {
	w.b.WriteString(name)
	if len(labels) > 0 {
		w.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				w.b.WriteByte(',')
			}
			w.b.WriteString(labels[i])
			w.b.WriteString(`="`)
			w.b.WriteString(escapeLabel(labels[i+1]))
			w.b.WriteByte('"')
		}
		w.b.WriteByte('}')
	}
	w.b.WriteByte(' ')
	w.b.WriteString(value)
	w.b.WriteByte('\n')
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func formatUint(v uint64) string { return strconv.FormatUint(v, 10) }

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// readScratch holds the buffers readBounded reads into: /proc files have
// no size to read by, and reading them with io.ReadAll allocated about
// three times their length per scrape.
var readScratch = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 16<<10)) }}

// readBounded returns up to limit bytes of the file at path.
func readBounded(path string, limit int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := readScratch.Get().(*bytes.Buffer)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(f, limit)); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	text := buf.String()
	if buf.Cap() <= 256<<10 { // a stat file of a big guest is not kept
		readScratch.Put(buf)
	}
	return text, nil
}

type containerStats struct {
	id                       string
	memUsage                 uint64
	memLimit                 string
	cpuUsec                  uint64
	hasMem, hasLimit, hasCPU bool
}

// cgroupDir confines a cgroup path under the cgroup root: the path comes
// from a container spec the host wrote.
func (c *Collector) cgroupDir(p string) string {
	return filepath.Join(c.cgroup, filepath.Clean("/"+p))
}

func (c *Collector) readContainer(id, cgroupPath string) containerStats {
	dir := c.cgroupDir(cgroupPath)
	s := containerStats{id: id}
	if v, err := readBounded(filepath.Join(dir, "memory.current"), maxSmallFile); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			s.memUsage, s.hasMem = n, true
		}
	}
	if v, err := readBounded(filepath.Join(dir, "memory.max"), maxSmallFile); err == nil {
		v = strings.TrimSpace(v)
		if v == "max" {
			s.memLimit, s.hasLimit = "+Inf", true
		} else if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			s.memLimit, s.hasLimit = formatUint(n), true
		}
	}
	if v, err := readBounded(filepath.Join(dir, "cpu.stat"), maxSmallFile); err == nil {
		for _, line := range strings.Split(v, "\n") {
			if rest, ok := strings.CutPrefix(line, "usage_usec "); ok {
				if n, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64); err == nil {
					s.cpuUsec, s.hasCPU = n, true
				}
			}
		}
	}
	return s
}

func (c *Collector) containerMetrics(w *writer) {
	if c.containers == nil {
		return
	}
	paths := c.containers.CgroupPaths()
	ids := make([]string, 0, len(paths))
	for id := range paths {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	stats := make([]containerStats, 0, len(ids))
	for _, id := range ids {
		stats = append(stats, c.readContainer(id, paths[id]))
	}
	emit := func(name, typ, help string, has func(containerStats) bool, value func(containerStats) string) {
		started := false
		for _, s := range stats {
			if !has(s) {
				continue
			}
			if !started {
				w.family(name, typ, help)
				started = true
			}
			w.sample(name, value(s), "container_id", s.id)
		}
	}
	emit("kata_container_memory_usage_bytes", "gauge", "Memory charged to the container's cgroup (memory.current).",
		func(s containerStats) bool { return s.hasMem },
		func(s containerStats) string { return formatUint(s.memUsage) })
	emit("kata_container_memory_limit_bytes", "gauge", "Memory limit of the container's cgroup (memory.max).",
		func(s containerStats) bool { return s.hasLimit },
		func(s containerStats) string { return s.memLimit })
	emit("kata_container_cpu_usage_seconds_total", "counter", "CPU time used by the container's cgroup (cpu.stat usage_usec).",
		func(s containerStats) bool { return s.hasCPU },
		func(s containerStats) string { return formatFloat(float64(s.cpuUsec) / 1e6) })
}
