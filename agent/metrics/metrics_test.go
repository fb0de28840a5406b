package metrics

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

type fakeContainers map[string]string

func (f fakeContainers) CgroupPaths() map[string]string { return f }

// fakeProc is a procfs with every file the collector reads. The agent's
// stat line has a command name with a space and a ')' in it.
func fakeProc(t *testing.T) string {
	t.Helper()
	proc := t.TempDir()
	writeFile(t, proc, "self/stat", "42 (kata agent) x) S 1 42 42 0 -1 4194560 500 0 0 0 250 130 3 -1 20 0 5 0 1234 104857600 1792 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")
	writeFile(t, proc, "self/status", "Name:\tkata-agent\nVmPeak:\t   9000 kB\nVmSize:\t   8000 kB\nVmRSS:\t    7168 kB\nRssAnon:\t    1100 kB\nThreads:\t5\nvoluntary_ctxt_switches:\t77\n")
	writeFile(t, proc, "self/io", "rchar: 6976\nwchar: 12\nsyscr: 10\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 0\ncancelled_write_bytes: 0\n")
	writeFile(t, proc, "self/limits", "Limit                     Soft Limit           Hard Limit           Units     \nMax processes             63706                63706                processes \nMax open files            1024                 524288               files     \n")
	writeFile(t, proc, "self/mountinfo", "22 1 0:21 / /proc rw,nosuid - proc proc rw\n25 1 0:23 / /run rw - tmpfs tmpfs rw,size=1024k\n")
	for _, fd := range []string{"0", "1", "2", "5"} {
		writeFile(t, proc, "self/fd/"+fd, "")
	}
	writeFile(t, proc, "meminfo", "MemTotal:         512000 kB\nMemFree:          300000 kB\nActive(anon):        100 kB\nHugePages_Total:       0\nZswap:                 5 kB\n")
	writeFile(t, proc, "stat", "cpu  59101 0 17325 28600 2667 0 184 212 0 0\ncpu0 150 1 2 3 4 5 6 7 8 9\nintr 1 2 3\nctxt 99\nbtime 1700000000\n")
	writeFile(t, proc, "loadavg", "0.50 0.25 0.05 2/123 4567\n")
	writeFile(t, proc, "vmstat", "nr_free_pages 75000\npgfault 123456\noom_kill 1\n")
	writeFile(t, proc, "net/dev", "Inter-|   Receive                                                |  Transmit\n"+
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"+
		"    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n"+
		"  eth0: 1000 10 1 2 3 4 5 6 2000 20 7 8 9 10 11 12\n")
	// vda has the 4.18 discard counters but not the 5.5 flush ones.
	writeFile(t, proc, "diskstats", "   7       0 loop0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n 254 0 vda 100 0 800 40 3 0 24 2 0 44 42 0 0 0 0\n")
	return proc
}

func TestGatherExactOutput(t *testing.T) {
	proc := fakeProc(t)
	cg := t.TempDir()
	writeFile(t, cg, "kata/b/memory.current", "4096\n")
	writeFile(t, cg, "kata/b/memory.max", "max\n")
	writeFile(t, cg, "kata/b/cpu.stat", "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n")
	writeFile(t, cg, "kata/a/memory.current", "8192\n")
	writeFile(t, cg, "kata/a/memory.max", "268435456\n")
	writeFile(t, cg, "kata/a/cpu.stat", "usage_usec 500000\n")
	c := New(Options{
		ProcRoot:   proc,
		CgroupRoot: cg,
		Containers: fakeContainers{
			"b":    "/kata/b",
			"a":    "kata/a",
			"gone": "/kata/gone", // exited: no cgroup any more
		},
		Goroutines: func() int { return 7 },
		GoMemory: func(m *runtime.MemStats) {
			*m = runtime.MemStats{HeapAlloc: 1 << 20, HeapInuse: 1536 << 10, HeapIdle: 2 << 20, HeapReleased: 1536 << 10,
				StackSys: 512 << 10, MSpanSys: 80 << 10, MCacheSys: 15 << 10, GCSys: 1 << 20, BuckHashSys: 4 << 10, OtherSys: 900 << 10}
		},
	})
	c.pageSize = 4096
	got, err := c.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := `# HELP kata_agent_scrape_count Metrics scrape count.
# TYPE kata_agent_scrape_count counter
kata_agent_scrape_count 1
# HELP kata_agent_threads Agent process threads.
# TYPE kata_agent_threads gauge
kata_agent_threads 5
# HELP kata_agent_total_time Agent process total time (user and system), in seconds.
# TYPE kata_agent_total_time gauge
kata_agent_total_time 3.8
# HELP kata_agent_total_vm Agent process total VM size, in bytes.
# TYPE kata_agent_total_vm gauge
kata_agent_total_vm 104857600
# HELP kata_agent_total_rss Agent process total RSS size, in bytes.
# TYPE kata_agent_total_rss gauge
kata_agent_total_rss 7340032
# HELP kata_agent_proc_status Agent process status, from /proc/self/status (memory in kB).
# TYPE kata_agent_proc_status gauge
kata_agent_proc_status{item="vmpeak"} 9000
kata_agent_proc_status{item="vmsize"} 8000
kata_agent_proc_status{item="vmlck"} 0
kata_agent_proc_status{item="vmpin"} 0
kata_agent_proc_status{item="vmhwm"} 0
kata_agent_proc_status{item="vmrss"} 7168
kata_agent_proc_status{item="rssanon"} 1100
kata_agent_proc_status{item="rssfile"} 0
kata_agent_proc_status{item="rssshmem"} 0
kata_agent_proc_status{item="vmdata"} 0
kata_agent_proc_status{item="vmstk"} 0
kata_agent_proc_status{item="vmexe"} 0
kata_agent_proc_status{item="vmlib"} 0
kata_agent_proc_status{item="vmpte"} 0
kata_agent_proc_status{item="vmswap"} 0
kata_agent_proc_status{item="hugetlbpages"} 0
kata_agent_proc_status{item="voluntary_ctxt_switches"} 77
kata_agent_proc_status{item="nonvoluntary_ctxt_switches"} 0
# HELP kata_agent_io_stat Agent process IO statistics, from /proc/self/io.
# TYPE kata_agent_io_stat gauge
kata_agent_io_stat{item="rchar"} 6976
kata_agent_io_stat{item="wchar"} 12
kata_agent_io_stat{item="syscr"} 10
kata_agent_io_stat{item="syscw"} 2
kata_agent_io_stat{item="read_bytes"} 4096
kata_agent_io_stat{item="write_bytes"} 0
kata_agent_io_stat{item="cancelled_write_bytes"} 0
# HELP kata_agent_proc_stat Agent process statistics, from /proc/self/stat (clock ticks).
# TYPE kata_agent_proc_stat gauge
kata_agent_proc_stat{item="utime"} 250
kata_agent_proc_stat{item="stime"} 130
kata_agent_proc_stat{item="cutime"} 3
kata_agent_proc_stat{item="cstime"} -1
# HELP kata_agent_process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE kata_agent_process_cpu_seconds_total counter
kata_agent_process_cpu_seconds_total 3.8
# HELP kata_agent_process_virtual_memory_bytes Virtual memory size in bytes.
# TYPE kata_agent_process_virtual_memory_bytes gauge
kata_agent_process_virtual_memory_bytes 104857600
# HELP kata_agent_process_resident_memory_bytes Resident memory size in bytes.
# TYPE kata_agent_process_resident_memory_bytes gauge
kata_agent_process_resident_memory_bytes 7340032
# HELP kata_agent_process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE kata_agent_process_start_time_seconds gauge
kata_agent_process_start_time_seconds 1700000012.34
# HELP kata_agent_process_open_fds Number of open file descriptors.
# TYPE kata_agent_process_open_fds gauge
kata_agent_process_open_fds 4
# HELP kata_agent_process_max_fds Maximum number of open file descriptors.
# TYPE kata_agent_process_max_fds gauge
kata_agent_process_max_fds 1024
# HELP kata_agent_rss_bytes Resident set size of the agent process.
# TYPE kata_agent_rss_bytes gauge
kata_agent_rss_bytes 7340032
# HELP kata_agent_anon_rss_bytes Anonymous resident memory of the agent process.
# TYPE kata_agent_anon_rss_bytes gauge
kata_agent_anon_rss_bytes 1126400
# HELP kata_agent_goroutines Goroutines in the agent.
# TYPE kata_agent_goroutines gauge
kata_agent_goroutines 7
# HELP kata_agent_go_memory_bytes Go runtime memory of the agent by use, in bytes (obtained from the kernel; not all resident).
# TYPE kata_agent_go_memory_bytes gauge
kata_agent_go_memory_bytes{item="heap_objects"} 1048576
kata_agent_go_memory_bytes{item="heap_in_use"} 1572864
kata_agent_go_memory_bytes{item="heap_free_retained"} 524288
kata_agent_go_memory_bytes{item="heap_released"} 1572864
kata_agent_go_memory_bytes{item="stacks"} 524288
kata_agent_go_memory_bytes{item="span_metadata"} 81920
kata_agent_go_memory_bytes{item="cache_metadata"} 15360
kata_agent_go_memory_bytes{item="gc_metadata"} 1048576
kata_agent_go_memory_bytes{item="profiling_buckets"} 4096
kata_agent_go_memory_bytes{item="other"} 921600
# HELP kata_agent_open_fds Open file descriptors of the agent process.
# TYPE kata_agent_open_fds gauge
kata_agent_open_fds 4
# HELP kata_guest_load Guest system load.
# TYPE kata_guest_load gauge
kata_guest_load{item="load1"} 0.5
kata_guest_load{item="load5"} 0.25
kata_guest_load{item="load15"} 0.05
# HELP kata_guest_tasks Guest scheduling entities: runnable (cur) and existing (max).
# TYPE kata_guest_tasks gauge
kata_guest_tasks{item="cur"} 2
kata_guest_tasks{item="max"} 123
# HELP kata_guest_diskstat Disks statistics in system, from /proc/diskstats.
# TYPE kata_guest_diskstat gauge
kata_guest_diskstat{disk="loop0",item="reads"} 1
kata_guest_diskstat{disk="loop0",item="merged"} 2
kata_guest_diskstat{disk="loop0",item="sectors_read"} 3
kata_guest_diskstat{disk="loop0",item="time_reading"} 4
kata_guest_diskstat{disk="loop0",item="writes"} 5
kata_guest_diskstat{disk="loop0",item="writes_merged"} 6
kata_guest_diskstat{disk="loop0",item="sectors_written"} 7
kata_guest_diskstat{disk="loop0",item="time_writing"} 8
kata_guest_diskstat{disk="loop0",item="in_progress"} 9
kata_guest_diskstat{disk="loop0",item="time_in_progress"} 10
kata_guest_diskstat{disk="loop0",item="weighted_time_in_progress"} 11
kata_guest_diskstat{disk="loop0",item="discards"} 12
kata_guest_diskstat{disk="loop0",item="discards_merged"} 13
kata_guest_diskstat{disk="loop0",item="sectors_discarded"} 14
kata_guest_diskstat{disk="loop0",item="time_discarding"} 15
kata_guest_diskstat{disk="loop0",item="flushes"} 16
kata_guest_diskstat{disk="loop0",item="time_flushing"} 17
kata_guest_diskstat{disk="vda",item="reads"} 100
kata_guest_diskstat{disk="vda",item="merged"} 0
kata_guest_diskstat{disk="vda",item="sectors_read"} 800
kata_guest_diskstat{disk="vda",item="time_reading"} 40
kata_guest_diskstat{disk="vda",item="writes"} 3
kata_guest_diskstat{disk="vda",item="writes_merged"} 0
kata_guest_diskstat{disk="vda",item="sectors_written"} 24
kata_guest_diskstat{disk="vda",item="time_writing"} 2
kata_guest_diskstat{disk="vda",item="in_progress"} 0
kata_guest_diskstat{disk="vda",item="time_in_progress"} 44
kata_guest_diskstat{disk="vda",item="weighted_time_in_progress"} 42
kata_guest_diskstat{disk="vda",item="discards"} 0
kata_guest_diskstat{disk="vda",item="discards_merged"} 0
kata_guest_diskstat{disk="vda",item="sectors_discarded"} 0
kata_guest_diskstat{disk="vda",item="time_discarding"} 0
kata_guest_diskstat{disk="vda",item="flushes"} 0
kata_guest_diskstat{disk="vda",item="time_flushing"} 0
# HELP kata_guest_vm_stat Guest virtual memory statistics, from /proc/vmstat.
# TYPE kata_guest_vm_stat gauge
kata_guest_vm_stat{item="nr_free_pages"} 75000
kata_guest_vm_stat{item="pgfault"} 123456
kata_guest_vm_stat{item="oom_kill"} 1
# HELP kata_guest_cpu_time Guest CPU statistics, from /proc/stat (milliseconds).
# TYPE kata_guest_cpu_time gauge
kata_guest_cpu_time{cpu="total",item="user"} 591010
kata_guest_cpu_time{cpu="total",item="nice"} 0
kata_guest_cpu_time{cpu="total",item="system"} 173250
kata_guest_cpu_time{cpu="total",item="idle"} 286000
kata_guest_cpu_time{cpu="total",item="iowait"} 26670
kata_guest_cpu_time{cpu="total",item="irq"} 0
kata_guest_cpu_time{cpu="total",item="softirq"} 1840
kata_guest_cpu_time{cpu="total",item="steal"} 2120
kata_guest_cpu_time{cpu="total",item="guest"} 0
kata_guest_cpu_time{cpu="total",item="guest_nice"} 0
kata_guest_cpu_time{cpu="0",item="user"} 1500
kata_guest_cpu_time{cpu="0",item="nice"} 10
kata_guest_cpu_time{cpu="0",item="system"} 20
kata_guest_cpu_time{cpu="0",item="idle"} 30
kata_guest_cpu_time{cpu="0",item="iowait"} 40
kata_guest_cpu_time{cpu="0",item="irq"} 50
kata_guest_cpu_time{cpu="0",item="softirq"} 60
kata_guest_cpu_time{cpu="0",item="steal"} 70
kata_guest_cpu_time{cpu="0",item="guest"} 80
kata_guest_cpu_time{cpu="0",item="guest_nice"} 90
# HELP kata_guest_cpu_seconds_total Guest CPU time by mode, from /proc/stat.
# TYPE kata_guest_cpu_seconds_total counter
kata_guest_cpu_seconds_total{cpu="total",mode="user"} 591.01
kata_guest_cpu_seconds_total{cpu="total",mode="nice"} 0
kata_guest_cpu_seconds_total{cpu="total",mode="system"} 173.25
kata_guest_cpu_seconds_total{cpu="total",mode="idle"} 286
kata_guest_cpu_seconds_total{cpu="total",mode="iowait"} 26.67
kata_guest_cpu_seconds_total{cpu="total",mode="irq"} 0
kata_guest_cpu_seconds_total{cpu="total",mode="softirq"} 1.84
kata_guest_cpu_seconds_total{cpu="total",mode="steal"} 2.12
kata_guest_cpu_seconds_total{cpu="total",mode="guest"} 0
kata_guest_cpu_seconds_total{cpu="total",mode="guest_nice"} 0
kata_guest_cpu_seconds_total{cpu="0",mode="user"} 1.5
kata_guest_cpu_seconds_total{cpu="0",mode="nice"} 0.01
kata_guest_cpu_seconds_total{cpu="0",mode="system"} 0.02
kata_guest_cpu_seconds_total{cpu="0",mode="idle"} 0.03
kata_guest_cpu_seconds_total{cpu="0",mode="iowait"} 0.04
kata_guest_cpu_seconds_total{cpu="0",mode="irq"} 0.05
kata_guest_cpu_seconds_total{cpu="0",mode="softirq"} 0.06
kata_guest_cpu_seconds_total{cpu="0",mode="steal"} 0.07
kata_guest_cpu_seconds_total{cpu="0",mode="guest"} 0.08
kata_guest_cpu_seconds_total{cpu="0",mode="guest_nice"} 0.09
# HELP kata_guest_netdev_stat Guest net devices statistics, from /proc/net/dev.
# TYPE kata_guest_netdev_stat gauge
kata_guest_netdev_stat{interface="lo",item="recv_bytes"} 3193
kata_guest_netdev_stat{interface="lo",item="recv_packets"} 29
kata_guest_netdev_stat{interface="lo",item="recv_errs"} 0
kata_guest_netdev_stat{interface="lo",item="recv_drop"} 0
kata_guest_netdev_stat{interface="lo",item="recv_fifo"} 0
kata_guest_netdev_stat{interface="lo",item="recv_frame"} 0
kata_guest_netdev_stat{interface="lo",item="recv_compressed"} 0
kata_guest_netdev_stat{interface="lo",item="recv_multicast"} 0
kata_guest_netdev_stat{interface="lo",item="sent_bytes"} 3193
kata_guest_netdev_stat{interface="lo",item="sent_packets"} 29
kata_guest_netdev_stat{interface="lo",item="sent_errs"} 0
kata_guest_netdev_stat{interface="lo",item="sent_drop"} 0
kata_guest_netdev_stat{interface="lo",item="sent_fifo"} 0
kata_guest_netdev_stat{interface="lo",item="sent_colls"} 0
kata_guest_netdev_stat{interface="lo",item="sent_carrier"} 0
kata_guest_netdev_stat{interface="lo",item="sent_compressed"} 0
kata_guest_netdev_stat{interface="eth0",item="recv_bytes"} 1000
kata_guest_netdev_stat{interface="eth0",item="recv_packets"} 10
kata_guest_netdev_stat{interface="eth0",item="recv_errs"} 1
kata_guest_netdev_stat{interface="eth0",item="recv_drop"} 2
kata_guest_netdev_stat{interface="eth0",item="recv_fifo"} 3
kata_guest_netdev_stat{interface="eth0",item="recv_frame"} 4
kata_guest_netdev_stat{interface="eth0",item="recv_compressed"} 5
kata_guest_netdev_stat{interface="eth0",item="recv_multicast"} 6
kata_guest_netdev_stat{interface="eth0",item="sent_bytes"} 2000
kata_guest_netdev_stat{interface="eth0",item="sent_packets"} 20
kata_guest_netdev_stat{interface="eth0",item="sent_errs"} 7
kata_guest_netdev_stat{interface="eth0",item="sent_drop"} 8
kata_guest_netdev_stat{interface="eth0",item="sent_fifo"} 9
kata_guest_netdev_stat{interface="eth0",item="sent_colls"} 10
kata_guest_netdev_stat{interface="eth0",item="sent_carrier"} 11
kata_guest_netdev_stat{interface="eth0",item="sent_compressed"} 12
# HELP kata_guest_meminfo Statistics about memory usage in the system, from /proc/meminfo (bytes).
# TYPE kata_guest_meminfo gauge
kata_guest_meminfo{item="mem_total"} 524288000
kata_guest_meminfo{item="mem_free"} 307200000
kata_guest_meminfo{item="mem_available"} 0
kata_guest_meminfo{item="buffers"} 0
kata_guest_meminfo{item="cached"} 0
kata_guest_meminfo{item="swap_cached"} 0
kata_guest_meminfo{item="active"} 0
kata_guest_meminfo{item="inactive"} 0
kata_guest_meminfo{item="active_anon"} 102400
kata_guest_meminfo{item="inactive_anon"} 0
kata_guest_meminfo{item="active_file"} 0
kata_guest_meminfo{item="inactive_file"} 0
kata_guest_meminfo{item="unevictable"} 0
kata_guest_meminfo{item="mlocked"} 0
kata_guest_meminfo{item="high_total"} 0
kata_guest_meminfo{item="high_free"} 0
kata_guest_meminfo{item="low_total"} 0
kata_guest_meminfo{item="low_free"} 0
kata_guest_meminfo{item="mmap_copy"} 0
kata_guest_meminfo{item="swap_total"} 0
kata_guest_meminfo{item="swap_free"} 0
kata_guest_meminfo{item="dirty"} 0
kata_guest_meminfo{item="writeback"} 0
kata_guest_meminfo{item="anon_pages"} 0
kata_guest_meminfo{item="mapped"} 0
kata_guest_meminfo{item="shmem"} 0
kata_guest_meminfo{item="slab"} 0
kata_guest_meminfo{item="s_reclaimable"} 0
kata_guest_meminfo{item="s_unreclaim"} 0
kata_guest_meminfo{item="kernel_stack"} 0
kata_guest_meminfo{item="page_tables"} 0
kata_guest_meminfo{item="quicklists"} 0
kata_guest_meminfo{item="nfs_unstable"} 0
kata_guest_meminfo{item="bounce"} 0
kata_guest_meminfo{item="writeback_tmp"} 0
kata_guest_meminfo{item="commit_limit"} 0
kata_guest_meminfo{item="committed_as"} 0
kata_guest_meminfo{item="vmalloc_total"} 0
kata_guest_meminfo{item="vmalloc_used"} 0
kata_guest_meminfo{item="vmalloc_chunk"} 0
kata_guest_meminfo{item="hardware_corrupted"} 0
kata_guest_meminfo{item="anon_hugepages"} 0
kata_guest_meminfo{item="shmem_hugepages"} 0
kata_guest_meminfo{item="shmem_pmd_mapped"} 0
kata_guest_meminfo{item="cma_total"} 0
kata_guest_meminfo{item="cma_free"} 0
kata_guest_meminfo{item="hugepages_total"} 0
kata_guest_meminfo{item="hugepages_free"} 0
kata_guest_meminfo{item="hugepages_rsvd"} 0
kata_guest_meminfo{item="hugepages_surp"} 0
kata_guest_meminfo{item="hugepagesize"} 0
kata_guest_meminfo{item="direct_map_4k"} 0
kata_guest_meminfo{item="direct_map_4M"} 0
kata_guest_meminfo{item="direct_map_2M"} 0
kata_guest_meminfo{item="direct_map_1G"} 0
kata_guest_meminfo{item="hugetlb"} 0
kata_guest_meminfo{item="per_cpu"} 0
kata_guest_meminfo{item="k_reclaimable"} 0
# HELP kata_container_memory_usage_bytes Memory charged to the container's cgroup (memory.current).
# TYPE kata_container_memory_usage_bytes gauge
kata_container_memory_usage_bytes{container_id="a"} 8192
kata_container_memory_usage_bytes{container_id="b"} 4096
# HELP kata_container_memory_limit_bytes Memory limit of the container's cgroup (memory.max).
# TYPE kata_container_memory_limit_bytes gauge
kata_container_memory_limit_bytes{container_id="a"} 268435456
kata_container_memory_limit_bytes{container_id="b"} +Inf
# HELP kata_container_cpu_usage_seconds_total CPU time used by the container's cgroup (cpu.stat usage_usec).
# TYPE kata_container_cpu_usage_seconds_total counter
kata_container_cpu_usage_seconds_total{container_id="a"} 0.5
kata_container_cpu_usage_seconds_total{container_id="b"} 1.234567
`
	if got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("line %d:\n got %q\nwant %q", i+1, g, w)
			}
		}
	}
}

func TestCgroupPathConfined(t *testing.T) {
	proc := fakeProc(t)
	base := t.TempDir()
	cg := filepath.Join(base, "cgroup")
	writeFile(t, base, "secret/memory.current", "666\n")
	writeFile(t, cg, "secret/memory.current", "42\n")
	c := New(Options{ProcRoot: proc, CgroupRoot: cg, Containers: fakeContainers{"x": "../../secret"}, Goroutines: func() int { return 1 }})
	got, err := c.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, `kata_container_memory_usage_bytes{container_id="x"} 42`+"\n") || strings.Contains(got, "666") {
		t.Errorf("cgroup path escaped the cgroup root:\n%s", got)
	}
}

func TestLabelEscaping(t *testing.T) {
	w := &writer{}
	w.sample("m", "1", "container_id", "a\"b\\c\nd")
	if got, want := w.b.String(), `m{container_id="a\"b\\c\nd"} 1`+"\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestGatherReportsUnreadableSections(t *testing.T) {
	proc := fakeProc(t)
	writeFile(t, proc, "loadavg", "garbage\n")
	if err := os.Remove(filepath.Join(proc, "meminfo")); err != nil {
		t.Fatal(err)
	}
	c := New(Options{ProcRoot: proc, Goroutines: func() int { return 3 }})
	got, err := c.Gather()
	if err == nil || !strings.Contains(err.Error(), "guest memory metrics") || !strings.Contains(err.Error(), `"garbage"`) {
		t.Errorf("error = %v, want it to name meminfo and loadavg", err)
	}
	if !strings.Contains(got, "kata_agent_goroutines 3\n") || strings.Contains(got, "kata_guest_load") || strings.Contains(got, "kata_guest_meminfo") {
		t.Errorf("partial output wrong:\n%s", got)
	}
}

func TestGatherRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no procfs")
	}
	got, err := New(Options{}).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nkata_agent_rss_bytes ", "\nkata_agent_open_fds ", "\nkata_agent_total_rss ", `kata_guest_meminfo{item="mem_total"} `, `kata_guest_cpu_seconds_total{cpu="total",mode="user"} `, `kata_guest_cpu_time{cpu="total",item="user"} `, `kata_guest_load{item="load1"} `} {
		if !strings.Contains(got, want) {
			t.Errorf("real /proc output lacks %q", want)
		}
	}
}
