package container

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseOOMKills(t *testing.T) {
	for in, want := range map[string]uint64{
		"low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n": 2,
		"oom 1\n":                         0,
		"":                                0,
		"oom_kill 18446744073709551615\n": 1<<64 - 1,
		"oom_kill garbage\n":              0,
	} {
		if got := parseOOMKills([]byte(in)); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}

// TestWatchOOMv2 drives the cgroup v2 watcher with a plain file standing in
// for memory.events: inotify reports writes to both alike.
func TestWatchOOMv2(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "memory.events")
	if err := os.WriteFile(events, []byte("low 0\noom 0\noom_kill 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 10)
	w, err := watchOOMv2(dir, func() { got <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	// A change that is not a kill reports nothing.
	if err := os.WriteFile(events, []byte("low 1\noom 1\noom_kill 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
		t.Fatal("reported an OOM kill without one")
	case <-time.After(100 * time.Millisecond):
	}
	if err := os.WriteFile(events, []byte("low 1\noom 2\noom_kill 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("OOM kill not reported")
	}
	// A kill the goroutine has not seen yet is reported by stop's flush,
	// exactly once either way.
	if err := os.WriteFile(events, []byte("oom_kill 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.stop()
	select {
	case <-got:
	case <-time.After(time.Second):
		t.Fatal("kill before stop not reported")
	}
	select {
	case <-got:
		t.Fatal("a kill reported twice")
	case <-time.After(100 * time.Millisecond):
	}
}
