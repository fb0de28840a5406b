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
		"systemd.unified_cgroup_hierarchy=1", "cgroup_no_v1=all", "fips=1"} {
		if !slices.Contains(fields, want) {
			t.Errorf("default command line %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "cryptomgr.notests") {
		t.Errorf("default command line disables crypto self-tests: %q", got)
	}
}

func TestFIPSOffAndDebug(t *testing.T) {
	o := Default()
	o.FIPS = false
	o.Debug = true
	got, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(got)
	if slices.Contains(fields, "fips=1") || slices.Contains(fields, "quiet") {
		t.Errorf("fips off / debug command line = %q", got)
	}
	if !slices.Contains(fields, "agent.debug_console") {
		t.Errorf("debug command line lacks agent.debug_console: %q", got)
	}
	if !slices.Contains(fields, "GODEBUG=fips140=off") {
		t.Errorf("non-FIPS command line does not take the agent out of FIPS mode: %q", got)
	}
	o.FIPS = true
	if got, _ := Build(o); strings.Contains(got, "GODEBUG") {
		t.Errorf("FIPS command line must leave the agent in FIPS mode: %q", got)
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
