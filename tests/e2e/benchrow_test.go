//go:build e2e

package e2e

import "testing"

// The bench table's verdict reads each budget as it is printed.
func TestBenchRowVerdict(t *testing.T) {
	for _, tc := range []struct {
		row  benchRow
		want string
	}{
		{benchRow{ours: "2143.2 ms", ratio: "1.47x", budget: "<= 1.10x"}, "missed"},
		{benchRow{ours: "1500.0 ms", ratio: "1.10x", budget: "<= 1.10x"}, "met"},
		{benchRow{ours: "193.5 ms", ratio: "0.30x", budget: "<= 0.8x runc"}, "met"},
		{benchRow{ours: "31.2 MB/s", ratio: "0.068x", budget: ">= 0.1x"}, "missed"},
		{benchRow{ours: "318.2 MB/s", ratio: "0.691x", budget: ">= 0.5x"}, "met"},
		{benchRow{ours: "4.69 MiB", ratio: "-", budget: "<= 1.50 MiB"}, "missed"},
		{benchRow{ours: "23.07 MiB", ratio: "-", budget: "<= 24.00 MiB"}, "met"},
		{benchRow{ours: "121.0 ms", ratio: "-", budget: "-"}, ""},
		{benchRow{ours: "see below", ratio: "-", budget: "<= 0.8x runc"}, ""},
	} {
		if got := tc.row.verdict(); got != tc.want {
			t.Errorf("%+v: verdict %q, want %q", tc.row, got, tc.want)
		}
	}
}

// The ReadStdout row pairs each transfer with its own floor run: the
// ratio is the median of the pairs' ratios, not the ratio of the medians
// (which here would be 20/200 = 0.1x).
func TestSummarizeStdoutPairsRounds(t *testing.T) {
	s := summarizeStdout([]stdoutRound{
		{mbps: 10, raw: 50, pipe: 20, rtt: 3},
		{mbps: 20, raw: 400, pipe: 40, rtt: 1},
		{mbps: 30, raw: 200, pipe: 30, rtt: 2},
	})
	if s.mbps != 20 || s.ofRaw != 0.15 || s.ofPipe != 0.5 || s.rtt != 2 {
		t.Errorf("summary = %.2f MB/s, %.3fx raw, %.2fx pipe, rtt %v; want 20 MB/s, 0.150x, 0.50x, 2", s.mbps, s.ofRaw, s.ofPipe, s.rtt)
	}
}

// The guest CPU accounting reads /proc/stat's cpu line and PID 1's stat,
// whose command name may hold spaces and parentheses.
func TestParseCPUTicks(t *testing.T) {
	out := "/ # head -n 1 /proc/stat; cat /proc/1/stat\r\n" +
		"cpu  100 5 200 1000 10 3 7 0 0 0\r\n" +
		"1 (kata (agent) x) S 0 1 1 0 -1 4194560 1 2 3 4 40 60 300 120 20 0 9 0 5 1 2 3\n"
	got, err := parseCPUTicks(out)
	if err != nil {
		t.Fatal(err)
	}
	want := cpuTicks{busy: 315, idle: 1010, interrupts: 10, agentUser: 40, agentSys: 60, reaped: 420}
	if got != want {
		t.Errorf("parseCPUTicks = %+v, want %+v", got, want)
	}
	for _, bad := range []string{
		"cpu 1 2 3\n1 (a) S",
		"cpu  100 5 200 1000 10 3 7 0 0 0",
		"cpu  100 5 200 1000 10 3 7 0 0 0\n1 kata S 0 1",
		"cpu  100 5 200 1000 10 3 7 0 0 0\n1 (a) S 0 1 1",
		"cpu  100 5 200 1000 10 3 7 0 0 0\n1 (a) S 0 1 1 0 -1 4194560 1 2 3 4 x 60 300 120",
	} {
		if _, err := parseCPUTicks(bad); err == nil {
			t.Errorf("parseCPUTicks(%q) accepted", bad)
		}
	}
	before := cpuTicks{busy: 100, idle: 100, interrupts: 10, agentUser: 30, agentSys: 10, reaped: 20}
	after := cpuTicks{busy: 180, idle: 120, interrupts: 20, agentUser: 55, agentSys: 25, reaped: 50}
	// 100 ticks over 10 calls: 1 tick (10 ms) = 10% per 10 calls.
	if got, want := cpuShares(before, after, 10), "  per call: agent 40.000 ms (40%) (user 25.000, system 15.000), writer 30.000 ms (30%), rest of the kernel 10.000 ms (10%), idle 20.000 ms (20%); interrupts within these 10.000 ms (10%)\n"; got != want {
		t.Errorf("cpuShares = %q, want %q", got, want)
	}
}
