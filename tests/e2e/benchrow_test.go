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
