package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestBootStepsSurviveReexec(t *testing.T) {
	t.Setenv(envBootSteps, "")
	first := &bootSteps{names: []string{"to-main", "config"}, at: []time.Duration{time.Second, 1500 * time.Millisecond}}
	first.handOn()

	second := newBootSteps()
	if v, ok := os.LookupEnv(envBootSteps); ok {
		t.Errorf("%s still in the environment (%q): it would reach helper processes", envBootSteps, v)
	}
	want := []string{"to-main", "config", "reexec-to-main"}
	if strings.Join(second.names, ",") != strings.Join(want, ",") {
		t.Fatalf("steps = %v, want %v", second.names, want)
	}
	second.names[2], second.at[2] = "reexec-to-main", 2*time.Second
	if got, wantStr := second.String(), "to-main=1s config=500ms reexec-to-main=500ms total=2s"; got != wantStr {
		t.Errorf("String() = %q, want %q", got, wantStr)
	}
}

func TestBootStepsIgnoreGarbage(t *testing.T) {
	t.Setenv(envBootSteps, "x,=,a=b,to-main=7")
	b := newBootSteps()
	if len(b.names) != 2 || b.names[0] != "to-main" || b.at[0] != 7 || b.names[1] != "reexec-to-main" {
		t.Errorf("steps = %v %v", b.names, b.at)
	}
}
