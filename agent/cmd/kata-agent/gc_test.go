package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)

	if got := tuneGC(func(string) string { return "" }); got != defaultGCPercent {
		t.Errorf("tuneGC without GOGC = %d, want %d", got, defaultGCPercent)
	}
	if p := debug.SetGCPercent(100); p != defaultGCPercent {
		t.Errorf("GC percent in force = %d, want %d", p, defaultGCPercent)
	}
	// GOGC in the environment wins: the runtime's setting stays.
	debug.SetGCPercent(70)
	if got := tuneGC(func(k string) string { return map[string]string{"GOGC": "70"}[k] }); got != 70 {
		t.Errorf("tuneGC with GOGC=70 = %d, want 70", got)
	}
	if p := debug.SetGCPercent(100); p != 70 {
		t.Errorf("GC percent in force = %d, want 70", p)
	}
}
