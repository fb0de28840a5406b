package metrics

import (
	"os"
	"strings"
	"testing"
)

// BenchmarkGather measures one scrape of this machine's /proc: a runtime
// polls GetMetrics, and what a scrape allocates grows the agent's heap
// between collections.
func BenchmarkGather(b *testing.B) {
	c := New(Options{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// readBounded reads past its first buffer and stops at the limit.
func TestReadBounded(t *testing.T) {
	p := t.TempDir() + "/f"
	text := strings.Repeat("0123456789abcdef", 3<<10) // 48 KiB: grows the 16 KiB buffer
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int64{1, 100, 16 << 10, 40 << 10, 48 << 10, 1 << 20} {
		got, err := readBounded(p, limit)
		want := text[:min(int64(len(text)), limit)]
		if err != nil || got != want {
			t.Errorf("readBounded(limit %d) = %d bytes, %v; want %d bytes", limit, len(got), err, len(want))
		}
	}
	if _, err := readBounded(t.TempDir()+"/missing", 10); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}
