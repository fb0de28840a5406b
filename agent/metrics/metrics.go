// Package metrics renders the agent's GetMetrics answer: the Prometheus
// text exposition format (version 0.0.4) describing the agent process, the
// guest and each container's cgroup.
//
// The text is written by hand rather than with a Prometheus client library:
// what the agent links, the guest pays for in memory, and a client library
// would also keep registries and goroutines alive between scrapes. Nothing
// is read until Gather is called.
package metrics

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
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
}

// Collector gathers metrics on demand.
type Collector struct {
	proc       string
	cgroup     string
	containers Containers
	goroutines func() int
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
	c := &Collector{proc: opts.ProcRoot, cgroup: opts.CgroupRoot, containers: opts.Containers, goroutines: opts.Goroutines}
	if c.proc == "" {
		c.proc = "/proc"
	}
	if c.cgroup == "" {
		c.cgroup = "/sys/fs/cgroup"
	}
	if c.goroutines == nil {
		c.goroutines = runtime.NumGoroutine
	}
	return c
}

// Gather returns the exposition text. A section that cannot be read is left
// out and reported in the error, so the caller may still return the rest;
// a container whose cgroup is gone (it just exited) is skipped silently.
func (c *Collector) Gather() (string, error) {
	w := &writer{}
	var errs []error
	if err := c.agent(w); err != nil {
		errs = append(errs, fmt.Errorf("agent process metrics: %w", err))
	}
	if err := c.meminfo(w); err != nil {
		errs = append(errs, fmt.Errorf("guest memory metrics: %w", err))
	}
	if err := c.cpu(w); err != nil {
		errs = append(errs, fmt.Errorf("guest CPU metrics: %w", err))
	}
	if err := c.load(w); err != nil {
		errs = append(errs, fmt.Errorf("guest load metrics: %w", err))
	}
	c.containerMetrics(w)
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

func readBounded(path string, limit int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return string(b), nil
}

// kbFields parses "Name:  123 kB" lines (status, meminfo) into values in
// bytes when the unit is kB, as they are otherwise.
func kbFields(text string) (names []string, values map[string]uint64) {
	values = map[string]uint64{}
	for _, line := range strings.Split(text, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) == 2 && f[1] == "kB" {
			v *= 1024
		} else if len(f) != 1 {
			continue
		}
		if _, dup := values[name]; !dup {
			names = append(names, name)
		}
		values[name] = v
	}
	return names, values
}

func (c *Collector) agent(w *writer) error {
	var errs []error
	status, err := readBounded(filepath.Join(c.proc, "self/status"), maxSmallFile)
	if err != nil {
		errs = append(errs, err)
	} else {
		_, v := kbFields(status)
		for _, m := range []struct{ field, name, help string }{
			{"VmRSS", "kata_agent_rss_bytes", "Resident set size of the agent process."},
			{"RssAnon", "kata_agent_anon_rss_bytes", "Anonymous resident memory of the agent process."},
			{"Threads", "kata_agent_threads", "Threads of the agent process."},
		} {
			if val, ok := v[m.field]; ok {
				w.family(m.name, "gauge", m.help)
				w.sample(m.name, formatUint(val))
			}
		}
	}
	w.family("kata_agent_goroutines", "gauge", "Goroutines in the agent.")
	w.sample("kata_agent_goroutines", strconv.Itoa(c.goroutines()))
	fds, err := os.ReadDir(filepath.Join(c.proc, "self/fd"))
	if err != nil {
		errs = append(errs, fmt.Errorf("list open fds: %w", err))
	} else {
		w.family("kata_agent_open_fds", "gauge", "Open file descriptors of the agent process.")
		w.sample("kata_agent_open_fds", strconv.Itoa(len(fds)))
	}
	return errors.Join(errs...)
}

func (c *Collector) meminfo(w *writer) error {
	text, err := readBounded(filepath.Join(c.proc, "meminfo"), maxSmallFile)
	if err != nil {
		return err
	}
	names, v := kbFields(text)
	if len(names) == 0 {
		return fmt.Errorf("%s: no fields", filepath.Join(c.proc, "meminfo"))
	}
	w.family("kata_guest_meminfo", "gauge", "Guest memory from /proc/meminfo, in bytes for fields the kernel gives in kB.")
	for _, n := range names {
		w.sample("kata_guest_meminfo", formatUint(v[n]), "item", n)
	}
	return nil
}

// cpuModes names the columns of /proc/stat cpu lines, in order.
var cpuModes = []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"}

func (c *Collector) cpu(w *writer) error {
	path := filepath.Join(c.proc, "stat")
	text, err := readBounded(path, maxStatFile)
	if err != nil {
		return err
	}
	started := false
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		cpu := strings.TrimPrefix(f[0], "cpu")
		if cpu == "" {
			cpu = "total"
		} else if _, err := strconv.Atoi(cpu); err != nil {
			continue
		}
		if !started {
			w.family("kata_guest_cpu_seconds_total", "counter", "Guest CPU time by mode, from /proc/stat.")
			started = true
		}
		for i, ticks := range f[1:] {
			if i >= len(cpuModes) {
				break
			}
			t, err := strconv.ParseUint(ticks, 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %s %s: %q is not a number", path, f[0], cpuModes[i], ticks)
			}
			w.sample("kata_guest_cpu_seconds_total", formatFloat(float64(t)/userHZ), "cpu", cpu, "mode", cpuModes[i])
		}
	}
	if !started {
		return fmt.Errorf("%s: no cpu lines", path)
	}
	return nil
}

func (c *Collector) load(w *writer) error {
	path := filepath.Join(c.proc, "loadavg")
	text, err := readBounded(path, maxSmallFile)
	if err != nil {
		return err
	}
	f := strings.Fields(text)
	if len(f) < 4 {
		return fmt.Errorf("%s: %q: want 5 fields", path, strings.TrimSpace(text))
	}
	var vals []string
	for _, s := range f[:3] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a load average", path, s)
		}
		vals = append(vals, formatFloat(v))
	}
	running, total, ok := strings.Cut(f[3], "/")
	r, err1 := strconv.ParseUint(running, 10, 64)
	t, err2 := strconv.ParseUint(total, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("%s: %q is not running/total tasks", path, f[3])
	}
	w.family("kata_guest_load", "gauge", "Guest load averages and scheduling entities, from /proc/loadavg.")
	w.sample("kata_guest_load", vals[0], "item", "load1")
	w.sample("kata_guest_load", vals[1], "item", "load5")
	w.sample("kata_guest_load", vals[2], "item", "load15")
	w.sample("kata_guest_load", formatUint(r), "item", "tasks_running")
	w.sample("kata_guest_load", formatUint(t), "item", "tasks_total")
	return nil
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
