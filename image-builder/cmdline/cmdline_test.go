package cmdline

import (
	"slices"
	"strings"
	"testing"
)

func TestDefault(t *testing.T) {
	got, err := Build(Default())
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(got)
	for _, want := range []string{"console=ttyS0", "quiet", "panic=1", "nr_cpus=8", "agent.log=info",
		"systemd.unified_cgroup_hierarchy=1", "cgroup_no_v1=all"} {
		if !slices.Contains(fields, want) {
			t.Errorf("default command line %q lacks %q", got, want)
		}
	}
	// FIPS follows the node: the host adds fips=1, the image does not,
	// and the agent needs no GODEBUG to follow the kernel.
	if slices.Contains(fields, "fips=1") || strings.Contains(got, "GODEBUG") {
		t.Errorf("default command line chooses a FIPS mode: %q", got)
	}
	if strings.Contains(got, "cryptomgr.notests") {
		t.Errorf("default command line disables crypto self-tests: %q", got)
	}
}

func TestDebug(t *testing.T) {
	o := Default()
	o.Debug = true
	got, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(got)
	if slices.Contains(fields, "quiet") {
		t.Errorf("debug command line = %q", got)
	}
	if !slices.Contains(fields, "agent.debug_console") {
		t.Errorf("debug command line lacks agent.debug_console: %q", got)
	}
}

func TestInvalid(t *testing.T) {
	for _, o := range []Options{
		{NrCPUs: 0, AgentLog: "info", Console: "ttyS0"},
		{NrCPUs: 1, AgentLog: "loud", Console: "ttyS0"},
		{NrCPUs: 1, AgentLog: "info", Console: "ttyS0 init=/bin/sh"},
	} {
		if got, err := Build(o); err == nil {
			t.Errorf("Build(%+v) = %q, want an error", o, got)
		}
	}
}
