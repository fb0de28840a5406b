package metrics

import (
	"os"
	"path/filepath"
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

func fakeProc(t *testing.T) string {
	t.Helper()
	proc := t.TempDir()
	writeFile(t, proc, "self/status", "Name:\tkata-agent\nVmPeak:\t   9000 kB\nVmRSS:\t    7168 kB\nRssAnon:\t    1100 kB\nThreads:\t5\n")
	for _, fd := range []string{"0", "1", "2", "5"} {
		writeFile(t, proc, "self/fd/"+fd, "")
	}
	writeFile(t, proc, "meminfo", "MemTotal:         512000 kB\nMemFree:          300000 kB\nActive(anon):        100 kB\nHugePages_Total:       0\n")
	writeFile(t, proc, "stat", "cpu  59101 0 17325 28600 2667 0 184 212 0 0\ncpu0 150 1 2 3 4 5 6 7 8 9\nintr 1 2 3\nctxt 99\n")
	writeFile(t, proc, "loadavg", "0.50 0.25 0.05 2/123 4567\n")
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
	})
	got, err := c.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := `# HELP kata_agent_rss_bytes Resident set size of the agent process.
# TYPE kata_agent_rss_bytes gauge
kata_agent_rss_bytes 7340032
# HELP kata_agent_anon_rss_bytes Anonymous resident memory of the agent process.
# TYPE kata_agent_anon_rss_bytes gauge
kata_agent_anon_rss_bytes 1126400
# HELP kata_agent_threads Threads of the agent process.
# TYPE kata_agent_threads gauge
kata_agent_threads 5
# HELP kata_agent_goroutines Goroutines in the agent.
# TYPE kata_agent_goroutines gauge
kata_agent_goroutines 7
# HELP kata_agent_open_fds Open file descriptors of the agent process.
# TYPE kata_agent_open_fds gauge
kata_agent_open_fds 4
# HELP kata_guest_meminfo Guest memory from /proc/meminfo, in bytes for fields the kernel gives in kB.
# TYPE kata_guest_meminfo gauge
kata_guest_meminfo{item="MemTotal"} 524288000
kata_guest_meminfo{item="MemFree"} 307200000
kata_guest_meminfo{item="Active(anon)"} 102400
kata_guest_meminfo{item="HugePages_Total"} 0
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
# HELP kata_guest_load Guest load averages and scheduling entities, from /proc/loadavg.
# TYPE kata_guest_load gauge
kata_guest_load{item="load1"} 0.5
kata_guest_load{item="load5"} 0.25
kata_guest_load{item="load15"} 0.05
kata_guest_load{item="tasks_running"} 2
kata_guest_load{item="tasks_total"} 123
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
	for _, want := range []string{"\nkata_agent_rss_bytes ", "\nkata_agent_open_fds ", `kata_guest_meminfo{item="MemTotal"} `, `kata_guest_cpu_seconds_total{cpu="total",mode="user"} `, `kata_guest_load{item="load1"} `} {
		if !strings.Contains(got, want) {
			t.Errorf("real /proc output lacks %q", want)
		}
	}
}
