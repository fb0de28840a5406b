package metrics

import (
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// upstreamFamily is what dashboards rely on for one family.
type upstreamFamily struct {
	typ    string
	labels []string // label names, sorted
	items  []string // the "item" label's values; nil when open-ended
}

// upstreamFamilies is transcribed from the upstream agent's
// src/agent/src/metrics.rs (kata_agent_*, kata_guest_*) and, for the
// kata_agent_process_* families, from upstream's docs/design/kata-2-0-metrics.md
// and dashboard (the runtime renames a Go agent's process_* families to
// these). Kept apart from the code's own tables on purpose.
var upstreamFamilies = map[string]upstreamFamily{
	"kata_agent_scrape_count": {typ: "COUNTER"},
	"kata_agent_threads":      {typ: "GAUGE"},
	"kata_agent_total_time":   {typ: "GAUGE"},
	"kata_agent_total_vm":     {typ: "GAUGE"},
	"kata_agent_total_rss":    {typ: "GAUGE"},
	"kata_agent_proc_status": {typ: "GAUGE", labels: []string{"item"}, items: []string{
		"vmpeak", "vmsize", "vmlck", "vmpin", "vmhwm", "vmrss", "rssanon", "rssfile", "rssshmem", "vmdata",
		"vmstk", "vmexe", "vmlib", "vmpte", "vmswap", "hugetlbpages", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"}},
	"kata_agent_io_stat": {typ: "GAUGE", labels: []string{"item"}, items: []string{
		"rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes", "cancelled_write_bytes"}},
	"kata_agent_proc_stat": {typ: "GAUGE", labels: []string{"item"}, items: []string{"utime", "stime", "cutime", "cstime"}},

	"kata_agent_process_cpu_seconds_total":     {typ: "COUNTER"},
	"kata_agent_process_max_fds":               {typ: "GAUGE"},
	"kata_agent_process_open_fds":              {typ: "GAUGE"},
	"kata_agent_process_resident_memory_bytes": {typ: "GAUGE"},
	"kata_agent_process_start_time_seconds":    {typ: "GAUGE"},
	"kata_agent_process_virtual_memory_bytes":  {typ: "GAUGE"},

	"kata_guest_load":  {typ: "GAUGE", labels: []string{"item"}, items: []string{"load1", "load5", "load15"}},
	"kata_guest_tasks": {typ: "GAUGE", labels: []string{"item"}, items: []string{"cur", "max"}},
	"kata_guest_cpu_time": {typ: "GAUGE", labels: []string{"cpu", "item"}, items: []string{
		"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"}},
	"kata_guest_vm_stat": {typ: "GAUGE", labels: []string{"item"}},
	"kata_guest_netdev_stat": {typ: "GAUGE", labels: []string{"interface", "item"}, items: []string{
		"recv_bytes", "recv_packets", "recv_errs", "recv_drop", "recv_fifo", "recv_frame", "recv_compressed", "recv_multicast",
		"sent_bytes", "sent_packets", "sent_errs", "sent_drop", "sent_fifo", "sent_colls", "sent_carrier", "sent_compressed"}},
	"kata_guest_diskstat": {typ: "GAUGE", labels: []string{"disk", "item"}, items: []string{
		"reads", "merged", "sectors_read", "time_reading", "writes", "writes_merged", "sectors_written", "time_writing",
		"in_progress", "time_in_progress", "weighted_time_in_progress", "discards", "discards_merged",
		"sectors_discarded", "time_discarding", "flushes", "time_flushing"}},
	"kata_guest_meminfo": {typ: "GAUGE", labels: []string{"item"}, items: []string{
		"mem_total", "mem_free", "mem_available", "buffers", "cached", "swap_cached", "active", "inactive",
		"active_anon", "inactive_anon", "active_file", "inactive_file", "unevictable", "mlocked", "high_total",
		"high_free", "low_total", "low_free", "mmap_copy", "swap_total", "swap_free", "dirty", "writeback",
		"anon_pages", "mapped", "shmem", "slab", "s_reclaimable", "s_unreclaim", "kernel_stack", "page_tables",
		"quicklists", "nfs_unstable", "bounce", "writeback_tmp", "commit_limit", "committed_as", "vmalloc_total",
		"vmalloc_used", "vmalloc_chunk", "hardware_corrupted", "anon_hugepages", "shmem_hugepages",
		"shmem_pmd_mapped", "cma_total", "cma_free", "hugepages_total", "hugepages_free", "hugepages_rsvd",
		"hugepages_surp", "hugepagesize", "direct_map_4k", "direct_map_4M", "direct_map_2M", "direct_map_1G",
		"hugetlb", "per_cpu", "k_reclaimable"}},
	"kata_guest_filesystem_bytes":  {typ: "GAUGE", labels: []string{"device", "item", "mount"}, items: []string{"total", "used", "available"}},
	"kata_guest_filesystem_inodes": {typ: "GAUGE", labels: []string{"device", "item", "mount"}, items: []string{"total", "used", "available"}},
}

// family is a parsed family: its type and each sample's labels.
type family struct {
	typ     string
	samples []map[string]string
}

func parseExposition(t *testing.T, text string) map[string]family {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus parser rejects the output: %v\n%s", err, text)
	}
	out := map[string]family{}
	for name, f := range fams {
		fam := family{typ: f.GetType().String()}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			fam.samples = append(fam.samples, labels)
		}
		out[name] = fam
	}
	return out
}

// checkFamily compares one gathered family with what upstream exports.
func checkFamily(t *testing.T, name string, f family, want upstreamFamily) {
	t.Helper()
	if f.typ != want.typ {
		t.Errorf("%s: type %v, upstream %v", name, f.typ, want.typ)
	}
	items := map[string]bool{}
	for _, labels := range f.samples {
		var names []string
		for n, v := range labels {
			names = append(names, n)
			if n == "item" {
				items[v] = true
			}
		}
		sort.Strings(names)
		if !slices.Equal(names, want.labels) {
			t.Errorf("%s: labels %v, upstream %v", name, names, want.labels)
			return
		}
	}
	if want.items != nil {
		var got []string
		for it := range items {
			got = append(got, it)
		}
		sort.Strings(got)
		exp := slices.Clone(want.items)
		sort.Strings(exp)
		if !slices.Equal(got, exp) {
			t.Errorf("%s: items\n got %v\nwant %v", name, got, exp)
		}
	}
}

// Every family the upstream agent exports is here, with its type, label
// names and items, when the guest has what it describes.
func TestUpstreamFamiliesPresent(t *testing.T) {
	proc := fakeProc(t)
	root, data := t.TempDir(), t.TempDir()
	writeFile(t, proc, "self/mountinfo", strings.Join([]string{
		"22 1 0:21 / /proc rw,nosuid - proc proc rw",
		"30 1 254:1 / " + root + " rw,relatime - ext4 /dev/vda1 rw",
		"31 1 254:1 /sub " + root + "/bind rw,relatime - ext4 /dev/vda1 rw", // same device: once
		"32 1 254:2 / /ro rw - ext4 /dev/vdb ro",                            // read-only: skipped
		"33 1 254:3 / " + data + " rw - xfs /dev/mapper/data rw,attr2",
	}, "\n")+"\n")
	c := New(Options{ProcRoot: proc, Goroutines: func() int { return 1 }})
	var statted []string
	c.statfs = func(path string, st *unix.Statfs_t) error {
		statted = append(statted, path)
		*st = unix.Statfs_t{Bsize: 4096, Blocks: 1000, Bfree: 250, Files: 64, Ffree: 60}
		return nil
	}
	text, err := c.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := parseExposition(t, text)
	for name, want := range upstreamFamilies {
		f, ok := fams[name]
		if !ok {
			t.Errorf("upstream family %s missing", name)
			continue
		}
		checkFamily(t, name, f, want)
	}
	if !slices.Equal(statted, []string{root, data}) {
		t.Errorf("statfs on %v, want the writable disk filesystems once each: %v", statted, []string{root, data})
	}
	for _, line := range []string{
		`kata_guest_filesystem_bytes{mount="` + root + `",device="vda1",item="total"} 4096000`,
		`kata_guest_filesystem_bytes{mount="` + root + `",device="vda1",item="used"} 3072000`,
		`kata_guest_filesystem_bytes{mount="` + root + `",device="vda1",item="available"} 1024000`,
		`kata_guest_filesystem_inodes{mount="` + data + `",device="data",item="used"} 4`,
	} {
		if !strings.Contains(text, "\n"+line+"\n") {
			t.Errorf("output lacks %q", line)
		}
	}
	// The counter counts.
	text, _ = c.Gather()
	if !strings.Contains(text, "\nkata_agent_scrape_count 2\n") {
		t.Errorf("second scrape: %q", text[:min(len(text), 200)])
	}
}

// On the machine's own procfs, the families that do not depend on disks
// being present all appear with upstream's shape.
func TestUpstreamFamiliesRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no procfs")
	}
	text, err := New(Options{}).Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := parseExposition(t, text)
	for name, want := range upstreamFamilies {
		switch {
		case strings.HasPrefix(name, "kata_guest_filesystem_"), name == "kata_guest_diskstat":
			// Depend on the machine's disks.
			if _, ok := fams[name]; !ok {
				continue
			}
		case name == "kata_agent_io_stat":
			if _, err := os.Stat("/proc/self/io"); err != nil {
				continue
			}
		}
		f, ok := fams[name]
		if !ok {
			t.Errorf("upstream family %s missing", name)
			continue
		}
		checkFamily(t, name, f, want)
	}
}

// A kernel without task I/O accounting has no /proc/self/io: the family is
// absent and no error is reported for it.
func TestNoTaskIOAccounting(t *testing.T) {
	proc := fakeProc(t)
	if err := os.Remove(proc + "/self/io"); err != nil {
		t.Fatal(err)
	}
	text, err := New(Options{ProcRoot: proc}).Gather()
	if err != nil {
		t.Errorf("error %v, want none", err)
	}
	if strings.Contains(text, "kata_agent_io_stat") || !strings.Contains(text, "kata_agent_proc_stat") {
		t.Errorf("output:\n%s", text)
	}
}

func TestParseProcStat(t *testing.T) {
	st, err := parseProcStat("7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 11 22 -3 4 20 0 9 0 555 4096 3 x\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := (procStat{utime: 11, stime: 22, cutime: -3, cstime: 4, threads: 9, startTicks: 555, vsize: 4096, rssPages: 3}); st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "7 no parens", "7 (a) R 1 2 3", "7 (a) R 1 7 7 0 -1 0 0 0 0 0 x 22 -3 4 20 0 9 0 555 4096 3\n"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
