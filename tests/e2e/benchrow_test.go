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
