//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	"github.com/sandbox-guest/sandbox-guest/image-builder/initrd"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// BenchmarkGuestBreakdown explains the memory rows of BenchmarkBudgets that
// the budgets do not reach, from the guest's own accounting: where the
// guest's used memory (MemTotal - MemAvailable) goes (/proc/meminfo,
// /proc/zoneinfo) and what the agent's resident memory is
// made of (/proc/1/smaps, by mapping), idle after CreateSandbox and after
// the lifecycles. It also times the container's side of the ReadStdout row
// alone: 64 MiB from the writer to /dev/null and through a pipe to `cat`
// in the guest, the path every ReadStdout byte takes before the agent sees
// it, and accounts the guest's CPU around the ReadStdout transfer
// (cpuShares).
// It boots the debug image (the agent plus a static busybox on vsock port 1026,
// which adds the busybox binary to the initramfs: reported).
func BenchmarkGuestBreakdown(b *testing.B) {
	cycles := envInt(b, "BENCH_CYCLES", 50)
	s := bootSuite(b, vmm.WithInitrd(debugInitrd(b)),
		vmm.WithAppend("agent.debug_console", fmt.Sprintf("agent.debug_console_vport=%d", debugConsolePort)))
	ctx := s.benchCtx(b)
	s.createSandbox(ctx, b, nil)
	time.Sleep(2 * time.Second)
	con := openConsole(b, s)
	defer con.Close()
	idle := con.snapshot(b)

	// busybox's head -c copies a byte at a time; dd bs=64k is what the
	// ReadStdout and stream-port rows run.
	rate := func(d time.Duration) float64 { return float64(streamBytes) / d.Seconds() / 1e6 }
	headNull := con.timed(b, fmt.Sprintf("head -c %d /dev/zero > /dev/null", streamBytes))
	ddNull := con.timed(b, fmt.Sprintf("dd if=/dev/zero bs=65536 count=%d > /dev/null", streamBytes/65536))
	ddPipe := con.timed(b, fmt.Sprintf("dd if=/dev/zero bs=65536 count=%d | cat > /dev/null", streamBytes/65536))
	// The ReadStdout row's transfer, with the guest's CPU accounted
	// around it.
	rtt := s.checkRTT(b, ctx)
	const stdoutCid = "bench-stdout"
	s.createContainer(b, stdoutCid, streamWriter())
	cpuBefore := con.cpuTicks(b)
	rs := rate(s.readStdoutAll(b, ctx, stdoutCid))
	cpuAfter := con.cpuTicks(b)
	s.remove(b, stdoutCid)

	const cid = "bench"
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, cid), s.bb); err != nil {
		b.Fatal(err)
	}
	s.lifecycles(b, ctx, cid, cycles)
	time.Sleep(2 * time.Second)
	after := con.snapshot(b)

	fmt.Printf("\nguest memory breakdown (debug image, %s)\n", cpioNote(b))
	fmt.Printf("%-44s %12s %12s\n", "", "idle", fmt.Sprintf("after %d", cycles))
	for _, r := range breakdownRows(idle, after) {
		fmt.Printf("%-44s %12s %12s\n", r[0], r[1], r[2])
	}
	fmt.Printf("\nagent (PID 1) resident memory by mapping, KiB: Rss (Anonymous)\n")
	for _, k := range mappingKinds(idle, after) {
		fmt.Printf("%-44s %12s %12s\n", k, idle.agent[k].String(), after.agent[k].String())
	}
	fmt.Printf("\ncontainer side of the ReadStdout row, in the guest, 64 MiB:\n")
	fmt.Printf("  busybox head -c > /dev/null      %7.1f MB/s\n", rate(headNull))
	fmt.Printf("  dd bs=64k > /dev/null            %7.1f MB/s\n", rate(ddNull))
	fmt.Printf("  dd bs=64k | cat > /dev/null      %7.1f MB/s\n", rate(ddPipe))
	fmt.Printf("  ReadStdout 32 KiB (dd bs=64k)    %7.1f MB/s (Check round trip %.2f ms)\n", rs, float64(rtt)/1e6)
	fmt.Print(cpuShares(cpuBefore, cpuAfter, streamBytes/shimReadLen))
	fmt.Printf("\nmeminfo after the lifecycles:\n%s\nagent's anonymous mappings after the lifecycles:\n%s\n", after.rawMeminfo, after.rawAnon)
	b.ReportMetric(rate(ddPipe), "guest-pipe-MB/s")
	b.ReportMetric(rs, "readstdout-MB/s")
	b.ReportMetric(after.used()/(1<<20), "guest-used-after-MiB")
}

// guestConsole is a connection to the debug console's shell.
type guestConsole struct {
	net.Conn
	r *bufio.Reader
	n int
}

func openConsole(tb testing.TB, s *suite) *guestConsole {
	c, err := s.vm.DialVsock(s.benchCtx(tb), debugConsolePort)
	if err != nil {
		tb.Fatalf("debug console: %v", err)
	}
	return &guestConsole{Conn: c, r: bufio.NewReaderSize(c, 1<<20)}
}

// run runs cmd in the guest's shell and returns its output (stdout and
// stderr), read up to an end marker that the command cannot print.
func (c *guestConsole) run(tb testing.TB, cmd string) string {
	tb.Helper()
	c.n++
	marker := fmt.Sprintf("end-of-%d", c.n)
	// The marker is split in the command so that the shell's echo of the
	// line, if any, does not match.
	if _, err := fmt.Fprintf(c, "%s 2>&1; echo end-of''-%d\n", cmd, c.n); err != nil {
		tb.Fatalf("debug console: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	var out strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if strings.TrimSpace(l) == marker {
			return out.String()
		}
		out.WriteString(l)
		if err != nil {
			tb.Fatalf("debug console: %v after:\n%s", err, out.String())
		}
	}
}

// timed runs cmd and returns how long it took, the console's round trip
// included (milliseconds against the seconds measured).
func (c *guestConsole) timed(tb testing.TB, cmd string) time.Duration {
	start := time.Now()
	c.run(tb, cmd)
	return time.Since(start)
}

// memSnapshot is what the breakdown reads from the guest at one moment.
type memSnapshot struct {
	meminfo map[string]float64 // bytes
	reserve float64            // bytes: the zones' high watermarks and lowmem protection
	agent   map[string]rssAnon
	low     float64 // bytes: the zones' low watermarks
	pcp     float64 // bytes: free pages on the per-CPU lists, which MemFree leaves out
	// rawMeminfo and rawAnon (the agent's mappings with anonymous
	// pages, smaps header and counters) go to the log as they are.
	rawMeminfo, rawAnon string
}

type rssAnon struct{ rss, anon float64 }

func (r rssAnon) String() string {
	return fmt.Sprintf("%.0f (%.0f)", r.rss/1024, r.anon/1024)
}

func (c *guestConsole) snapshot(tb testing.TB) memSnapshot {
	s := memSnapshot{meminfo: map[string]float64{}, agent: map[string]rssAnon{}}
	s.rawMeminfo = c.run(tb, "cat /proc/meminfo")
	for _, l := range strings.Split(s.rawMeminfo, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			v, _ := strconv.ParseFloat(f[1], 64)
			if len(f) == 3 && f[2] == "kB" {
				v *= 1024
			}
			s.meminfo[strings.TrimSuffix(f[0], ":")] = v
		}
	}
	zi := c.run(tb, "cat /proc/zoneinfo")
	s.reserve, s.low = zoneReserve(zi)
	s.pcp = pcpFree(zi)
	smaps := c.run(tb, "cat /proc/1/smaps")
	s.agent = smapsByKind(smaps)
	s.rawAnon = anonMappings(smaps)
	return s
}

// anonMappings keeps the smaps entries with anonymous pages: the header
// line and the Rss and Anonymous counters.
func anonMappings(smaps string) string {
	var out strings.Builder
	var head, rss string
	for _, l := range strings.Split(smaps, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			head = l
		case len(f) >= 2 && f[0] == "Rss:":
			rss = f[1]
		case len(f) >= 2 && f[0] == "Anonymous:" && f[1] != "0":
			fmt.Fprintf(&out, "  %s  Rss %s kB, Anonymous %s kB\n", head, rss, f[1])
		}
	}
	return out.String()
}

// zoneReserve is what MemAvailable holds back in every zone: the high
// watermark plus the largest lowmem protection (the kernel's
// totalreserve_pages, capped at the zone's managed pages).
func zoneReserve(zoneinfo string) (reserve, lowWmark float64) {
	var total, high, prot, managed, lowSum float64
	flush := func() {
		r := high + prot
		if r > managed {
			r = managed
		}
		total += r
		high, prot, managed = 0, 0, 0
	}
	for _, l := range strings.Split(zoneinfo, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 4 && f[0] == "Node" && f[2] == "zone":
			flush()
		case len(f) == 2 && f[0] == "low":
			v, _ := strconv.ParseFloat(f[1], 64)
			lowSum += v
		case len(f) == 2 && f[0] == "high":
			high, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "managed":
			managed, _ = strconv.ParseFloat(f[1], 64)
		case len(f) > 1 && f[0] == "protection:":
			for _, p := range f[1:] {
				v, _ := strconv.ParseFloat(strings.Trim(p, "(),"), 64)
				if v > prot {
					prot = v
				}
			}
		}
	}
	flush()
	return total * 4096, lowSum * 4096
}

// pcpFree sums the "count:" of every per-CPU pageset in /proc/zoneinfo.
func pcpFree(zoneinfo string) float64 {
	var n float64
	for _, l := range strings.Split(zoneinfo, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "count:" {
			v, _ := strconv.ParseFloat(f[1], 64)
			n += v
		}
	}
	return n * 4096
}

// smapsByKind sums Rss and Anonymous per kind of mapping: the binary's
// own (text, data, bss), the Go heap arenas, thread stacks and the rest.
func smapsByKind(smaps string) map[string]rssAnon {
	out := map[string]rssAnon{}
	kind := ""
	prevEnd := uint64(0)
	prevKind := ""
	for _, l := range strings.Split(smaps, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if start, end, ok := strings.Cut(f[0], "-"); ok && len(f) >= 5 && !strings.HasSuffix(f[0], ":") {
			lo, err1 := strconv.ParseUint(start, 16, 64)
			hi, err2 := strconv.ParseUint(end, 16, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			path := ""
			if len(f) >= 6 {
				path = f[5]
			}
			// The agent is /init, or in the agent image (initrd.AgentPath).
			binary := path == "/init" || path == initrd.AgentPath
			switch {
			case binary && strings.Contains(f[1], "x"):
				kind = "binary text"
			case binary:
				kind = "binary data/rodata"
			case path == "" && prevKind != "" && strings.HasPrefix(prevKind, "binary") && lo == prevEnd:
				kind = "binary bss"
			case path == "[heap]":
				kind = "C heap (brk)"
			case path == "[stack]":
				kind = "main stack"
			case strings.HasPrefix(path, "["):
				kind = "kernel " + path
			case path != "":
				kind = "file " + path
			// The Go heap's arenas are mapped at the runtime's hints,
			// below the mmap area (0x7f...); pthread stacks are 8 MiB
			// mappings there, glibc's thread arenas 64 MiB aligned.
			case hi < 0x7f0000000000:
				kind = "Go heap (arena)"
			case hi-lo == 8<<20:
				kind = "thread stacks (pthread)"
			case lo%(64<<20) == 0 && hi-lo <= 1<<20:
				kind = "C malloc thread arenas"
			default:
				kind = "other anonymous (Go runtime metadata)"
			}
			prevEnd, prevKind = hi, kind
			continue
		}
		if kind == "" || len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		r := out[kind]
		switch f[0] {
		case "Rss:":
			r.rss += v * 1024
		case "Anonymous:":
			r.anon += v * 1024
		}
		out[kind] = r
	}
	return out
}

func (s memSnapshot) used() float64 { return s.meminfo["MemTotal"] - s.meminfo["MemAvailable"] }

// breakdownRows splits MemTotal - MemAvailable into the kernel's counters.
// What no counter names (driver pages, the kernel's own page allocations)
// is the remainder.
func breakdownRows(a, b memSnapshot) [][3]string {
	type part struct {
		name string
		f    func(memSnapshot) float64
	}
	m := func(k string) func(memSnapshot) float64 { return func(s memSnapshot) float64 { return s.meminfo[k] } }
	parts := []part{
		{"files in RAM (initramfs, tmpfs)", func(s memSnapshot) float64 { return s.meminfo["Unevictable"] + s.meminfo["Shmem"] }},
		{"  of which ramfs (Unevictable)", m("Unevictable")},
		{"  of which tmpfs (Shmem)", m("Shmem")},
		{"anonymous pages (agent and others)", m("AnonPages")},
		{"slab unreclaimable", m("SUnreclaim")},
		{"slab reclaimable (not all counted available)", m("SReclaimable")},
		{"kernel stacks", m("KernelStack")},
		{"page tables", m("PageTables")},
		{"per-cpu", m("Percpu")},
		{"zone reserve (watermarks, held back)", func(s memSnapshot) float64 { return s.reserve }},
		// MemAvailable counts file cache and reclaimable slab as
		// available only above min(half, the low watermarks).
		{"free pages on per-CPU lists (not in MemFree)", func(s memSnapshot) float64 { return s.pcp }},
		{"file cache held back by MemAvailable", func(s memSnapshot) float64 {
			return min((s.meminfo["Active(file)"]+s.meminfo["Inactive(file)"])/2, s.low)
		}},
	}
	var rows [][3]string
	sum := func(s memSnapshot) float64 {
		var t float64
		for _, p := range parts {
			if !strings.HasPrefix(p.name, "  ") {
				t += p.f(s)
			}
		}
		return t
	}
	f := func(v float64) string { return fmt.Sprintf("%.2f MiB", v/(1<<20)) }
	rows = append(rows, [3]string{"used (MemTotal - MemAvailable)", f(a.used()), f(b.used())})
	for _, p := range parts {
		rows = append(rows, [3]string{p.name, f(p.f(a)), f(p.f(b))})
	}
	rows = append(rows, [3]string{"remainder (uncounted kernel pages, file cache)", f(a.used() - sum(a)), f(b.used() - sum(b))})
	rows = append(rows, [3]string{"MemTotal", f(a.meminfo["MemTotal"]), f(b.meminfo["MemTotal"])})
	return rows
}

func mappingKinds(a, b memSnapshot) []string {
	seen := map[string]bool{}
	var ks []string
	for _, s := range []memSnapshot{a, b} {
		for k := range s.agent {
			if !seen[k] {
				seen[k] = true
				ks = append(ks, k)
			}
		}
	}
	sort.Slice(ks, func(i, j int) bool { return b.agent[ks[i]].rss > b.agent[ks[j]].rss })
	return ks
}

// cpioNote names the main image's initramfs size (from its manifest), to
// set against the debug image's.
func cpioNote(tb testing.TB) string {
	b, err := os.ReadFile(filepath.Join(imageDir(tb), "manifest.json"))
	if err != nil {
		return "main image manifest unreadable"
	}
	var m struct {
		Initrd struct {
			CPIOSize int64 `json:"cpio_size"`
		} `json:"initrd"`
		Agent struct {
			Size int64 `json:"size"`
		} `json:"agent"`
	}
	if json.Unmarshal(b, &m) != nil {
		return "main image manifest unreadable"
	}
	return fmt.Sprintf("main image: initramfs %.2f MiB unpacked, of which the agent %.2f MiB; the debug image adds busybox",
		float64(m.Initrd.CPIOSize)/(1<<20), float64(m.Agent.Size)/(1<<20))
}

// cpuTicks is the guest's CPU time at one moment, in USER_HZ ticks: all
// of it (the first line of /proc/stat), and PID 1's (the agent's) own and
// that of the children it has waited for, which holds a container's
// processes once they are reaped. With tick accounting (the guest
// kernel's), a tick that lands in an interrupt counts as interrupt time
// and also as the interrupted process's system time.
type cpuTicks struct {
	busy, idle          float64 // idle counts iowait too
	interrupts          float64 // hard and soft interrupts, part of busy
	agentUser, agentSys float64
	reaped              float64
}

func (c *guestConsole) cpuTicks(tb testing.TB) cpuTicks {
	tb.Helper()
	t, err := parseCPUTicks(c.run(tb, "head -n 1 /proc/stat; cat /proc/1/stat"))
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// parseCPUTicks reads the /proc/stat cpu line and PID 1's /proc/PID/stat
// line out of the console's output, which may echo the command first.
func parseCPUTicks(out string) (cpuTicks, error) {
	var t cpuTicks
	var cpu []string
	stat := ""
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch f := strings.Fields(l); {
		case len(f) > 0 && f[0] == "cpu":
			cpu = f
		case len(f) > 1 && f[0] == "1" && strings.HasPrefix(f[1], "("):
			stat = l
		}
	}
	if len(cpu) < 9 {
		return t, fmt.Errorf("cpu ticks: no full /proc/stat cpu line in %q", out)
	}
	v, err := parseFloats(cpu[1:9]) // user nice system idle iowait irq softirq steal
	if err != nil {
		return t, fmt.Errorf("cpu ticks: /proc/stat: %w", err)
	}
	t.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	t.idle = v[3] + v[4]
	t.interrupts = v[5] + v[6]
	// The command name, in parentheses, may hold spaces: count fields
	// from the last ')'. After it come state and ten more; utime,
	// stime, cutime and cstime are the 12th to the 15th.
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return t, fmt.Errorf("cpu ticks: no /proc/1/stat line in %q", out)
	}
	pid := strings.Fields(stat[end+1:])
	if len(pid) < 15 {
		return t, fmt.Errorf("cpu ticks: short /proc/1/stat line: %q", stat)
	}
	p, err := parseFloats(pid[11:15])
	if err != nil {
		return t, fmt.Errorf("cpu ticks: /proc/1/stat: %w", err)
	}
	t.agentUser, t.agentSys, t.reaped = p[0], p[1], p[2]+p[3]
	return t, nil
}

func parseFloats(fields []string) ([]float64, error) {
	v := make([]float64, len(fields))
	for i, f := range fields {
		x, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, err
		}
		v[i] = x
	}
	return v, nil
}

// cpuShares says where the guest's vCPU time went during a transfer of
// calls calls, per call and as a share of the whole: the agent, the
// reaped writer, the rest of the busy time (kernel threads, such as the
// vsock transport's workers, and interrupts that landed outside the two),
// and idle: the vCPU waiting for the host. Interrupts, wherever they
// landed, are given apart too.
func cpuShares(before, after cpuTicks, calls int) string {
	const tick = 10 * time.Millisecond // USER_HZ 100
	busy, idle := after.busy-before.busy, after.idle-before.idle
	user, sys := after.agentUser-before.agentUser, after.agentSys-before.agentSys
	reaped := after.reaped - before.reaped
	ms := func(ticks float64) float64 { return ticks * float64(tick) / float64(time.Millisecond) / float64(calls) }
	per := func(ticks float64) string {
		return fmt.Sprintf("%.3f ms (%.0f%%)", ms(ticks), 100*ticks/(busy+idle))
	}
	return fmt.Sprintf("  per call: agent %s (user %.3f, system %.3f), writer %s, rest of the kernel %s, idle %s; interrupts within these %s\n",
		per(user+sys), ms(user), ms(sys), per(reaped), per(busy-user-sys-reaped), per(idle), per(after.interrupts-before.interrupts))
}
