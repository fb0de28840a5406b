// Package cmdline builds the guest's default kernel command line.
package cmdline

import (
	"fmt"
	"strconv"
	"strings"
)

// Options select the variable parts of the default command line.
type Options struct {
	NrCPUs   int    // nr_cpus=: upper bound for hot-plugged vCPUs
	AgentLog string // agent.log= level
	Console  string // console device, ttyS0 on q35
	Debug    bool   // agent.debug_console, and no "quiet"
}

// Default returns the options used when no flags are given.
func Default() Options {
	return Options{NrCPUs: 8, AgentLog: "info", Console: "ttyS0"}
}

// validLevels are the agent.log values the Kata agent accepts.
var validLevels = map[string]bool{"trace": true, "debug": true, "info": true, "warn": true, "error": true, "critical": true}

// Build returns the command line. It is the same for FIPS and non-FIPS
// nodes and carries no fips=1: FIPS mode is a property of the node, and the
// host adds fips=1 where the node runs in FIPS mode (the agent then follows
// the kernel by itself). It deliberately leaves out Kata's
// "cryptomgr.notests": skipping the crypto self-tests is incompatible with
// fips=1.
func Build(o Options) (string, error) {
	if o.NrCPUs < 1 || o.NrCPUs > 4096 {
		return "", fmt.Errorf("nr_cpus %d out of range 1..4096", o.NrCPUs)
	}
	if !validLevels[o.AgentLog] {
		return "", fmt.Errorf("agent log level %q not one of trace, debug, info, warn, error, critical", o.AgentLog)
	}
	if o.Console == "" || strings.ContainsAny(o.Console, " \t\n") {
		return "", fmt.Errorf("console %q is not a device name", o.Console)
	}
	args := []string{"console=" + o.Console}
	if !o.Debug {
		args = append(args, "quiet")
	}
	args = append(args,
		"panic=1",
		"nr_cpus="+strconv.Itoa(o.NrCPUs),
		"tsc=reliable",
		"no_timer_check",
		"rcupdate.rcu_expedited=1",
		"reboot=k",
		"net.ifnames=0",
		"scsi_mod.scan=none",
		"agent.log="+o.AgentLog,
		"systemd.unified_cgroup_hierarchy=1",
		"cgroup_no_v1=all",
	)
	if o.Debug {
		args = append(args, "agent.debug_console")
	}
	return strings.Join(args, " "), nil
}
