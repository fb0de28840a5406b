package kernel

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMeterCountsCompiledObjects(t *testing.T) {
	var m Meter
	out := "make[2]: Entering directory '/obj'\n" +
		"  SYNC    include/config/auto.conf.cmd\n" +
		"  HOSTCC  scripts/basic/fixdep\n" +
		"  HOSTCC  scripts/kconfig/conf.o\n" +
		"  CC      kernel/fork.o\n" +
		"  AS      arch/x86/entry/entry_64.o\n" +
		"  CC [M]  fs/fuse/virtio_fs.o\n" +
		"  LD      vmlinux.o\n" +
		"  AR      mm/built-in.a\n" +
		"  CC      kernel/bounds.s\n" +
		"  GEN     Makefile\n" +
		"  CC      mm/rmap.o\n"
	// Written in small pieces: lines cross writes.
	for i := 0; i < len(out); i += 7 {
		end := min(i+7, len(out))
		if n, err := m.Write([]byte(out[i:end])); err != nil || n != end-i {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	n, last := m.Objects()
	if n != 4 || last != "mm/rmap.o" {
		t.Fatalf("Objects = %d, %q; want 4, mm/rmap.o", n, last)
	}
	// A runaway line is dropped and does not swallow the next one.
	m.Write(bytes.Repeat([]byte("x"), 3*maxLine))
	m.Write([]byte("\n  CC      mm/vmalloc.o\n"))
	if n, last := m.Objects(); n != 5 || last != "mm/vmalloc.o" {
		t.Fatalf("after a long line: Objects = %d, %q; want 5, mm/vmalloc.o", n, last)
	}
}

// fakeClock and fakeCount drive a Reporter without sleeping.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestReporterPlainLinesEveryInterval(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	objects := 0
	var buf bytes.Buffer
	r := &Reporter{W: &buf, Now: clk.now, Count: func() (int, string) { return objects, "" },
		Expect: Estimate{Objects: 1000, Duration: 10 * time.Minute}}
	r.Begin()
	steps := []struct {
		after   time.Duration
		objects int
	}{
		{10 * time.Second, 5},  // not due
		{20 * time.Second, 20}, // 30s: due; 2% built: last duration minus elapsed
		{15 * time.Second, 50}, // 45s: not due
		{15 * time.Second, 100},
		{30 * time.Second, 1000}, // 90s: at the last build's count
		{30 * time.Second, 1010}, // 120s: past it
	}
	for _, s := range steps {
		clk.advance(s.after)
		objects = s.objects
		r.Tick()
	}
	r.End()
	want := "    last build: 1000 objects in 10m0s\n" +
		"    20/1000 objects (2%), 30s elapsed, about 9m30s left\n" +
		"    100/1000 objects (10%), 1m0s elapsed, about 9m0s left\n" +
		"    1000 objects (last build: 1000), 1m30s elapsed, finishing\n" +
		"    1010 objects (last build: 1000), 2m0s elapsed, finishing\n"
	if got := buf.String(); got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestReporterTerminalRewritesOneLine(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	objects := 0
	var buf bytes.Buffer
	r := &Reporter{W: &buf, TTY: true, Now: clk.now, Count: func() (int, string) { return objects, "" }}
	r.Begin()
	for i := 1; i <= 3; i++ {
		clk.advance(time.Second)
		objects = i * 7
		r.Tick()
	}
	r.End()
	want := "    no earlier build of this kind recorded: no estimate\n" +
		"\r\x1b[K    7 objects, 1s elapsed" +
		"\r\x1b[K    14 objects, 2s elapsed" +
		"\r\x1b[K    21 objects, 3s elapsed" +
		"\r\x1b[K"
	if got := buf.String(); got != want {
		t.Fatalf("output %q\nwant   %q", got, want)
	}
}

func TestEstimateRemaining(t *testing.T) {
	e := Estimate{Objects: 200, Duration: 4 * time.Minute}
	for _, c := range []struct {
		objects int
		elapsed time.Duration
		want    time.Duration
		ok      bool
	}{
		{0, 0, 4 * time.Minute, true},
		{5, 5 * time.Minute, 0, false}, // slower than last time, still early: no guess
		{50, time.Minute, 3 * time.Minute, true},
		{200, time.Minute, 0, false},
	} {
		got, ok := e.remaining(c.objects, c.elapsed)
		if got != c.want || ok != c.ok {
			t.Errorf("remaining(%d, %s) = %s, %v; want %s, %v", c.objects, c.elapsed, got, ok, c.want, c.ok)
		}
	}
	if _, ok := (Estimate{}).remaining(10, time.Second); ok {
		t.Error("an empty estimate gave a time left")
	}
}

func TestHistoryAppendReadEstimate(t *testing.T) {
	path := filepath.Join(t.TempDir(), HistoryFile)
	if recs, err := ReadHistory(path); err != nil || len(recs) != 0 {
		t.Fatalf("missing history = %v, %v", recs, err)
	}
	add := func(r BuildRecord) {
		t.Helper()
		if err := AppendHistory(path, r); err != nil {
			t.Fatal(err)
		}
	}
	add(BuildRecord{Version: "6.12.117", Objects: 1700, Seconds: 900, Fresh: true})
	add(BuildRecord{Version: "6.12.117", Objects: 350, Seconds: 200})
	add(BuildRecord{Version: "6.12.118", Objects: 1800, Seconds: 1000, Fresh: true})
	// A torn or foreign line is skipped, not fatal.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("{not json\n")
	f.Close()
	recs, err := ReadHistory(path)
	if err != nil || len(recs) != 3 {
		t.Fatalf("ReadHistory = %d records, %v; want 3", len(recs), err)
	}
	if e := EstimateFor(recs, "6.12.117", true); e.Objects != 1700 || e.Duration != 15*time.Minute {
		t.Errorf("fresh estimate = %+v", e)
	}
	if e := EstimateFor(recs, "6.12.117", false); e.Objects != 350 {
		t.Errorf("incremental estimate = %+v", e)
	}
	if e := EstimateFor(recs, "6.1.0", true); e != (Estimate{}) {
		t.Errorf("estimate for an unknown version = %+v", e)
	}
	for i := 0; i < maxHistory+5; i++ {
		add(BuildRecord{Version: "6.12.117", Objects: i + 1, Seconds: 1})
	}
	recs, _ = ReadHistory(path)
	if len(recs) != maxHistory || recs[len(recs)-1].Objects != maxHistory+5 {
		t.Fatalf("history holds %d records ending with %+v; want the newest %d", len(recs), recs[len(recs)-1], maxHistory)
	}
}

// fakeMake stands in for make on PATH: olddefconfig leaves the config as
// it is, bzImage prints kbuild lines slowly and leaves a kernel and a
// vmlinux in the object directory.
const fakeMake = `#!/bin/sh
obj=
for a in "$@"; do case "$a" in O=*) obj=${a#O=};; esac; done
case " $* " in *" olddefconfig "*) exit 0;; esac
echo "  HOSTCC  scripts/basic/fixdep"
for o in init/main.o kernel/fork.o mm/rmap.o; do
	echo "  CC      $o"
	sleep 0.2
done
mkdir -p "$obj/arch/x86/boot"
echo kernel > "$obj/arch/x86/boot/bzImage"
echo vmlinux > "$obj/vmlinux"
`

func TestBuildReportsProgressAndRecordsHistory(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "make"), []byte(fakeMake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cache := t.TempDir()
	v := Version{6, 12, 117, ""}
	build := func(config string) (Artifact, string) {
		t.Helper()
		var out bytes.Buffer
		a, err := Build(context.Background(), BuildOptions{SrcDir: t.TempDir(), CacheDir: cache, Version: v,
			Config: []byte(config), Progress: &out, ProgressInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatalf("Build: %v\n%s", err, out.String())
		}
		return a, out.String()
	}

	a, out := build("CONFIG_A=y\n")
	if a.Hit || a.Objects != 3 || a.Duration <= 0 {
		t.Fatalf("first build = %+v; want 3 objects built", a)
	}
	if !strings.Contains(out, "no earlier build of this kind recorded") || !strings.Contains(out, " objects, ") {
		t.Fatalf("first build's progress:\n%s", out)
	}
	// The object directory now holds a kernel: the next build is
	// incremental, and there is no incremental build to go by yet.
	_, out = build("CONFIG_B=y\n")
	if !strings.Contains(out, "no earlier build of this kind recorded") {
		t.Fatalf("second build's progress:\n%s", out)
	}
	// The third has the second to go by.
	_, out = build("CONFIG_C=y\n")
	if !strings.Contains(out, "last build: 3 objects in ") || !strings.Contains(out, "/3 objects") {
		t.Fatalf("third build's progress:\n%s", out)
	}

	recs, err := ReadHistory(filepath.Join(cache, "kernel", HistoryFile))
	if err != nil || len(recs) != 3 {
		t.Fatalf("history = %+v, %v; want 3 records", recs, err)
	}
	if !recs[0].Fresh || recs[1].Fresh || recs[2].Fresh {
		t.Errorf("fresh flags = %v %v %v; want true false false", recs[0].Fresh, recs[1].Fresh, recs[2].Fresh)
	}
	for _, r := range recs {
		if r.Version != "6.12.117" || r.Objects != 3 || r.Seconds <= 0 || r.ConfigHash == "" {
			t.Errorf("record %+v", r)
		}
	}
	// A cache hit runs no make and records nothing.
	if a, _ := build("CONFIG_A=y\n"); !a.Hit {
		t.Fatalf("rebuild of the first config = %+v; want a cache hit", a)
	}
	if recs, _ := ReadHistory(filepath.Join(cache, "kernel", HistoryFile)); len(recs) != 3 {
		t.Fatalf("history after a hit has %d records; want 3", len(recs))
	}
}
