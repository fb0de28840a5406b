package metrics

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// meminfoItems are upstream's kata_guest_meminfo items and the
// /proc/meminfo fields they come from, in upstream's order. Values are in
// bytes (counts for the HugePages_ fields); a field this kernel lacks is
// reported as 0, as upstream does.
var meminfoItems = []struct{ field, item string }{
	{"MemTotal", "mem_total"}, {"MemFree", "mem_free"}, {"MemAvailable", "mem_available"},
	{"Buffers", "buffers"}, {"Cached", "cached"}, {"SwapCached", "swap_cached"},
	{"Active", "active"}, {"Inactive", "inactive"}, {"Active(anon)", "active_anon"},
	{"Inactive(anon)", "inactive_anon"}, {"Active(file)", "active_file"}, {"Inactive(file)", "inactive_file"},
	{"Unevictable", "unevictable"}, {"Mlocked", "mlocked"}, {"HighTotal", "high_total"},
	{"HighFree", "high_free"}, {"LowTotal", "low_total"}, {"LowFree", "low_free"},
	{"MmapCopy", "mmap_copy"}, {"SwapTotal", "swap_total"}, {"SwapFree", "swap_free"},
	{"Dirty", "dirty"}, {"Writeback", "writeback"}, {"AnonPages", "anon_pages"},
	{"Mapped", "mapped"}, {"Shmem", "shmem"}, {"Slab", "slab"},
	{"SReclaimable", "s_reclaimable"}, {"SUnreclaim", "s_unreclaim"}, {"KernelStack", "kernel_stack"},
	{"PageTables", "page_tables"}, {"Quicklists", "quicklists"}, {"NFS_Unstable", "nfs_unstable"},
	{"Bounce", "bounce"}, {"WritebackTmp", "writeback_tmp"}, {"CommitLimit", "commit_limit"},
	{"Committed_AS", "committed_as"}, {"VmallocTotal", "vmalloc_total"}, {"VmallocUsed", "vmalloc_used"},
	{"VmallocChunk", "vmalloc_chunk"}, {"HardwareCorrupted", "hardware_corrupted"}, {"AnonHugePages", "anon_hugepages"},
	{"ShmemHugePages", "shmem_hugepages"}, {"ShmemPmdMapped", "shmem_pmd_mapped"}, {"CmaTotal", "cma_total"},
	{"CmaFree", "cma_free"}, {"HugePages_Total", "hugepages_total"}, {"HugePages_Free", "hugepages_free"},
	{"HugePages_Rsvd", "hugepages_rsvd"}, {"HugePages_Surp", "hugepages_surp"}, {"Hugepagesize", "hugepagesize"},
	{"DirectMap4k", "direct_map_4k"}, {"DirectMap4M", "direct_map_4M"}, {"DirectMap2M", "direct_map_2M"},
	{"DirectMap1G", "direct_map_1G"}, {"Hugetlb", "hugetlb"}, {"Percpu", "per_cpu"},
	{"KReclaimable", "k_reclaimable"},
}

func (c *Collector) meminfo(w *writer) error {
	path := filepath.Join(c.proc, "meminfo")
	text, err := readBounded(path, maxSmallFile)
	if err != nil {
		return err
	}
	names, v := kbFields(text)
	if len(names) == 0 {
		return fmt.Errorf("%s: no fields", path)
	}
	w.family("kata_guest_meminfo", "gauge", "Statistics about memory usage in the system, from /proc/meminfo (bytes).")
	for _, it := range meminfoItems {
		w.sample("kata_guest_meminfo", formatUint(v[it.field]), "item", it.item)
	}
	return nil
}

// cpuModes names the columns of /proc/stat cpu lines, in order; they are
// also upstream's kata_guest_cpu_time items.
var cpuModes = []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"}

// cpu writes upstream's kata_guest_cpu_time (milliseconds, every mode) and
// our kata_guest_cpu_seconds_total (seconds, the modes the kernel gives).
func (c *Collector) cpu(w *writer) error {
	path := filepath.Join(c.proc, "stat")
	text, err := readBounded(path, maxStatFile)
	if err != nil {
		return err
	}
	type row struct {
		cpu   string
		ticks []uint64
	}
	var rows []row
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
		r := row{cpu: cpu}
		for i, s := range f[1:min(len(f), len(cpuModes)+1)] {
			t, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %s %s: %q is not a number", path, f[0], cpuModes[i], s)
			}
			r.ticks = append(r.ticks, t)
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return fmt.Errorf("%s: no cpu lines", path)
	}
	w.family("kata_guest_cpu_time", "gauge", "Guest CPU statistics, from /proc/stat (milliseconds).")
	for _, r := range rows {
		for i, mode := range cpuModes {
			var ms uint64
			if i < len(r.ticks) {
				ms = r.ticks[i] * 1000 / userHZ
			}
			w.sample("kata_guest_cpu_time", formatUint(ms), "cpu", r.cpu, "item", mode)
		}
	}
	w.family("kata_guest_cpu_seconds_total", "counter", "Guest CPU time by mode, from /proc/stat.")
	for _, r := range rows {
		for i, t := range r.ticks {
			w.sample("kata_guest_cpu_seconds_total", formatFloat(float64(t)/userHZ), "cpu", r.cpu, "mode", cpuModes[i])
		}
	}
	return nil
}

// load writes upstream's kata_guest_load (load averages) and
// kata_guest_tasks (runnable and total scheduling entities).
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
	w.family("kata_guest_load", "gauge", "Guest system load.")
	w.sample("kata_guest_load", vals[0], "item", "load1")
	w.sample("kata_guest_load", vals[1], "item", "load5")
	w.sample("kata_guest_load", vals[2], "item", "load15")
	w.family("kata_guest_tasks", "gauge", "Guest scheduling entities: runnable (cur) and existing (max).")
	w.sample("kata_guest_tasks", formatUint(r), "item", "cur")
	w.sample("kata_guest_tasks", formatUint(t), "item", "max")
	return nil
}

// vmstat writes kata_guest_vm_stat, every /proc/vmstat counter.
func (c *Collector) vmstat(w *writer) error {
	path := filepath.Join(c.proc, "vmstat")
	text, err := readBounded(path, maxSmallFile)
	if err != nil {
		return err
	}
	started := false
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		if !started {
			w.family("kata_guest_vm_stat", "gauge", "Guest virtual memory statistics, from /proc/vmstat.")
			started = true
		}
		w.sample("kata_guest_vm_stat", formatUint(v), "item", f[0])
	}
	if !started {
		return fmt.Errorf("%s: no counters", path)
	}
	return nil
}

// netdevItems name the 16 counters of a /proc/net/dev line, in order.
var netdevItems = []string{
	"recv_bytes", "recv_packets", "recv_errs", "recv_drop", "recv_fifo", "recv_frame", "recv_compressed", "recv_multicast",
	"sent_bytes", "sent_packets", "sent_errs", "sent_drop", "sent_fifo", "sent_colls", "sent_carrier", "sent_compressed",
}

// netdev writes kata_guest_netdev_stat from /proc/net/dev (the agent's
// network namespace, which is the pod's).
func (c *Collector) netdev(w *writer) error {
	path := filepath.Join(c.proc, "net/dev")
	text, err := readBounded(path, maxSmallFile)
	if err != nil {
		return err
	}
	started := false
	for _, line := range strings.Split(text, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue // the two header lines
		}
		f := strings.Fields(rest)
		if len(f) != len(netdevItems) {
			return fmt.Errorf("%s: %q: want %d counters", path, strings.TrimSpace(line), len(netdevItems))
		}
		if !started {
			w.family("kata_guest_netdev_stat", "gauge", "Guest net devices statistics, from /proc/net/dev.")
			started = true
		}
		iface := strings.TrimSpace(name)
		for i, s := range f {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %s %s: %q is not a number", path, iface, netdevItems[i], s)
			}
			w.sample("kata_guest_netdev_stat", formatUint(v), "interface", iface, "item", netdevItems[i])
		}
	}
	return nil
}

// diskstatItems name the counters of a /proc/diskstats line after major,
// minor and name. Kernels before 4.18 give the first 11, before 5.5 the
// first 15; missing ones are reported as 0, as upstream does.
var diskstatItems = []string{
	"reads", "merged", "sectors_read", "time_reading", "writes", "writes_merged", "sectors_written",
	"time_writing", "in_progress", "time_in_progress", "weighted_time_in_progress",
	"discards", "discards_merged", "sectors_discarded", "time_discarding", "flushes", "time_flushing",
}

// diskstats writes kata_guest_diskstat; a guest without block devices has
// no samples and so no family.
func (c *Collector) diskstats(w *writer) error {
	path := filepath.Join(c.proc, "diskstats")
	text, err := readBounded(path, maxStatFile)
	if err != nil {
		return err
	}
	started := false
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 3+11 {
			return fmt.Errorf("%s: %q: want at least 14 fields", path, strings.TrimSpace(line))
		}
		disk := f[2]
		vals := make([]uint64, len(diskstatItems))
		for i, s := range f[3:min(len(f), 3+len(diskstatItems))] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %s %s: %q is not a number", path, disk, diskstatItems[i], s)
			}
			vals[i] = v
		}
		if !started {
			w.family("kata_guest_diskstat", "gauge", "Disks statistics in system, from /proc/diskstats.")
			started = true
		}
		for i, v := range vals {
			w.sample("kata_guest_diskstat", formatUint(v), "disk", disk, "item", diskstatItems[i])
		}
	}
	return nil
}
