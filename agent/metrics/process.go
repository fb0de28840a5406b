package metrics

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// statusField is one "Name: value [kB]" line of a procfs file.
type statusField struct {
	value uint64
	kB    bool
}

// statusFields parses "Name:  123 kB" lines (status, meminfo, io) in file
// order, keeping the values as written.
func statusFields(text string) (names []string, fields map[string]statusField) {
	fields = map[string]statusField{}
	for _, line := range strings.Split(text, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 || (len(f) == 2 && f[1] != "kB") {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if _, dup := fields[name]; !dup {
			names = append(names, name)
		}
		fields[name] = statusField{value: v, kB: len(f) == 2}
	}
	return names, fields
}

// kbFields is statusFields with kB values converted to bytes.
func kbFields(text string) (names []string, values map[string]uint64) {
	names, fields := statusFields(text)
	values = make(map[string]uint64, len(fields))
	for n, f := range fields {
		if f.kB {
			f.value *= 1024
		}
		values[n] = f.value
	}
	return names, values
}

// procStatusItems are upstream's kata_agent_proc_status items and the
// /proc/self/status fields they come from. Values stay in the file's unit
// (kB for memory), as upstream reports them.
var procStatusItems = []struct{ field, item string }{
	{"VmPeak", "vmpeak"}, {"VmSize", "vmsize"}, {"VmLck", "vmlck"}, {"VmPin", "vmpin"},
	{"VmHWM", "vmhwm"}, {"VmRSS", "vmrss"}, {"RssAnon", "rssanon"}, {"RssFile", "rssfile"},
	{"RssShmem", "rssshmem"}, {"VmData", "vmdata"}, {"VmStk", "vmstk"}, {"VmExe", "vmexe"},
	{"VmLib", "vmlib"}, {"VmPTE", "vmpte"}, {"VmSwap", "vmswap"}, {"HugetlbPages", "hugetlbpages"},
	{"voluntary_ctxt_switches", "voluntary_ctxt_switches"},
	{"nonvoluntary_ctxt_switches", "nonvoluntary_ctxt_switches"},
}

// ioItems are the /proc/self/io fields, which are also upstream's
// kata_agent_io_stat items.
var ioItems = []string{"rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes", "cancelled_write_bytes"}

// procStat is what the metrics use of /proc/self/stat.
type procStat struct {
	utime, stime   uint64 // clock ticks
	cutime, cstime int64  // clock ticks of waited-for children
	threads        uint64
	startTicks     uint64 // start time, ticks after boot
	vsize          uint64 // bytes
	rssPages       int64
}

// parseProcStat reads /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from its last ')'.
func parseProcStat(text string) (procStat, error) {
	var st procStat
	i := strings.LastIndexByte(text, ')')
	if i < 0 {
		return st, errors.New("no command name")
	}
	f := strings.Fields(text[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3]; rss is field 24.
	if len(f) < 22 {
		return st, fmt.Errorf("%d fields after the command name, want at least 22", len(f))
	}
	var errs []error
	u := func(n int) uint64 {
		v, err := strconv.ParseUint(f[n-3], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("field %d: %q is not a number", n, f[n-3]))
		}
		return v
	}
	s := func(n int) int64 {
		v, err := strconv.ParseInt(f[n-3], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("field %d: %q is not a number", n, f[n-3]))
		}
		return v
	}
	st = procStat{utime: u(14), stime: u(15), cutime: s(16), cstime: s(17), threads: u(20),
		startTicks: u(22), vsize: u(23), rssPages: s(24)}
	return st, errors.Join(errs...)
}

// agent writes the agent process's families: upstream's, the
// kata_agent_process_* ones the runtime's dashboards read, and ours.
func (c *Collector) agent(w *writer) error {
	var errs []error
	statPath := filepath.Join(c.proc, "self/stat")
	var st *procStat
	if text, err := readBounded(statPath, maxSmallFile); err != nil {
		errs = append(errs, err)
	} else if parsed, err := parseProcStat(text); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", statPath, err))
	} else {
		st = &parsed
	}
	var status map[string]statusField
	if text, err := readBounded(filepath.Join(c.proc, "self/status"), maxSmallFile); err != nil {
		errs = append(errs, err)
	} else {
		_, status = statusFields(text)
	}
	fds, fdErr := os.ReadDir(filepath.Join(c.proc, "self/fd"))
	if fdErr != nil {
		errs = append(errs, fmt.Errorf("list open fds: %w", fdErr))
	}

	var cpuSeconds string
	var rss uint64
	if st != nil {
		cpuSeconds = formatFloat(float64(st.utime+st.stime) / userHZ)
		rss = uint64(max(st.rssPages, 0)) * c.pageSize
		w.family("kata_agent_threads", "gauge", "Agent process threads.")
		w.sample("kata_agent_threads", formatUint(st.threads))
		w.family("kata_agent_total_time", "gauge", "Agent process total time (user and system), in seconds.")
		w.sample("kata_agent_total_time", cpuSeconds)
		w.family("kata_agent_total_vm", "gauge", "Agent process total VM size, in bytes.")
		w.sample("kata_agent_total_vm", formatUint(st.vsize))
		w.family("kata_agent_total_rss", "gauge", "Agent process total RSS size, in bytes.")
		w.sample("kata_agent_total_rss", formatUint(rss))
	}
	if status != nil {
		w.family("kata_agent_proc_status", "gauge", "Agent process status, from /proc/self/status (memory in kB).")
		for _, it := range procStatusItems {
			w.sample("kata_agent_proc_status", formatUint(status[it.field].value), "item", it.item)
		}
	}
	if err := c.agentIO(w); err != nil {
		errs = append(errs, err)
	}
	if st != nil {
		w.family("kata_agent_proc_stat", "gauge", "Agent process statistics, from /proc/self/stat (clock ticks).")
		w.sample("kata_agent_proc_stat", formatUint(st.utime), "item", "utime")
		w.sample("kata_agent_proc_stat", formatUint(st.stime), "item", "stime")
		w.sample("kata_agent_proc_stat", strconv.FormatInt(st.cutime, 10), "item", "cutime")
		w.sample("kata_agent_proc_stat", strconv.FormatInt(st.cstime, 10), "item", "cstime")

		w.family("kata_agent_process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.")
		w.sample("kata_agent_process_cpu_seconds_total", cpuSeconds)
		w.family("kata_agent_process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
		w.sample("kata_agent_process_virtual_memory_bytes", formatUint(st.vsize))
		w.family("kata_agent_process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
		w.sample("kata_agent_process_resident_memory_bytes", formatUint(rss))
		if btime, err := c.bootTime(); err != nil {
			errs = append(errs, err)
		} else {
			w.family("kata_agent_process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
			w.sample("kata_agent_process_start_time_seconds", formatFloat(float64(btime)+float64(st.startTicks)/userHZ))
		}
	}
	if fdErr == nil {
		w.family("kata_agent_process_open_fds", "gauge", "Number of open file descriptors.")
		w.sample("kata_agent_process_open_fds", strconv.Itoa(len(fds)))
	}
	if n, ok, err := c.maxFDs(); err != nil {
		errs = append(errs, err)
	} else if ok {
		w.family("kata_agent_process_max_fds", "gauge", "Maximum number of open file descriptors.")
		w.sample("kata_agent_process_max_fds", formatUint(n))
	}

	// Ours.
	for _, m := range []struct{ field, name, help string }{
		{"VmRSS", "kata_agent_rss_bytes", "Resident set size of the agent process."},
		{"RssAnon", "kata_agent_anon_rss_bytes", "Anonymous resident memory of the agent process."},
	} {
		if f, ok := status[m.field]; ok && f.kB {
			w.family(m.name, "gauge", m.help)
			w.sample(m.name, formatUint(f.value*1024))
		}
	}
	w.family("kata_agent_goroutines", "gauge", "Goroutines in the agent.")
	w.sample("kata_agent_goroutines", strconv.Itoa(c.goroutines()))
	c.goMemoryFamily(w)
	if fdErr == nil {
		w.family("kata_agent_open_fds", "gauge", "Open file descriptors of the agent process.")
		w.sample("kata_agent_open_fds", strconv.Itoa(len(fds)))
	}
	return errors.Join(errs...)
}

// agentIO writes kata_agent_io_stat. A kernel built without task I/O
// accounting has no /proc/self/io: the family is then simply absent, as
// nothing is wrong.
func (c *Collector) agentIO(w *writer) error {
	text, err := readBounded(filepath.Join(c.proc, "self/io"), maxSmallFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_, fields := statusFields(text)
	w.family("kata_agent_io_stat", "gauge", "Agent process IO statistics, from /proc/self/io.")
	for _, it := range ioItems {
		w.sample("kata_agent_io_stat", formatUint(fields[it].value), "item", it)
	}
	return nil
}

// bootTime reads the boot time (btime, seconds since the epoch) from
// /proc/stat, once.
func (c *Collector) bootTime() (uint64, error) {
	if v := c.btime.Load(); v != 0 {
		return v, nil
	}
	path := filepath.Join(c.proc, "stat")
	text, err := readBounded(path, maxStatFile)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: btime %q is not a number", path, strings.TrimSpace(rest))
			}
			c.btime.Store(v)
			return v, nil
		}
	}
	return 0, fmt.Errorf("%s: no btime line", path)
}

// maxFDs reads the soft open-files limit from /proc/self/limits; ok is
// false when it is unlimited.
func (c *Collector) maxFDs() (n uint64, ok bool, err error) {
	path := filepath.Join(c.proc, "self/limits")
	text, err := readBounded(path, maxSmallFile)
	if err != nil {
		return 0, false, err
	}
	for _, line := range strings.Split(text, "\n") {
		rest, found := strings.CutPrefix(line, "Max open files")
		if !found {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		if f[0] == "unlimited" {
			return 0, false, nil
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%s: open files limit %q is not a number", path, f[0])
		}
		return v, true, nil
	}
	return 0, false, fmt.Errorf("%s: no open files limit", path)
}

// goMemoryFamily writes kata_agent_go_memory_bytes: where the Go runtime's
// memory goes, to tell the agent's RssAnon apart (the live heap, the heap's
// free spans not yet returned to the kernel, stacks, the runtime's own
// metadata). These are the runtime's figures of memory obtained from the
// kernel, not all of it resident. Reading them stops the world for
// microseconds on the agent's small heap.
func (c *Collector) goMemoryFamily(w *writer) {
	var m runtime.MemStats
	c.goMemory(&m)
	w.family("kata_agent_go_memory_bytes", "gauge", "Go runtime memory of the agent by use, in bytes (obtained from the kernel; not all resident).")
	for _, it := range []struct {
		item string
		v    uint64
	}{
		{"heap_objects", m.HeapAlloc},
		{"heap_in_use", m.HeapInuse},
		{"heap_free_retained", m.HeapIdle - m.HeapReleased},
		{"heap_released", m.HeapReleased},
		{"stacks", m.StackSys},
		{"span_metadata", m.MSpanSys},
		{"cache_metadata", m.MCacheSys},
		{"gc_metadata", m.GCSys},
		{"profiling_buckets", m.BuckHashSys},
		{"other", m.OtherSys},
	} {
		w.sample("kata_agent_go_memory_bytes", formatUint(it.v), "item", it.item)
	}
}
