//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

func init() {
	registerSharedGuestTest("BootOneProcess", (*suite).testBootOneProcess)
}

// testBootOneProcess checks that PID 1 starts once on a non-FIPS node: the
// root move needs no re-exec and Go's FIPS module is off by default, so
// only a fips=1 kernel makes the agent start a second time (with
// GODEBUG=fips140=on). The agent's `serving` line names its start-up
// steps; a re-executed agent has a "reexec-to-main" step.
func (s *suite) testBootOneProcess(t *testing.T) {
	console := s.vm.ConsoleTail(16 << 20)
	starting := bootConsoleLine(console, `"msg":"starting"`)
	serving := bootConsoleLine(console, `"msg":"serving"`)
	if starting == "" || serving == "" {
		t.Fatalf("agent start-up lines not on the console:\n%s", bootTailLines(console, 40))
	}
	fipsNode := strings.Contains(starting, `"fips":"enabled"`)
	reexeced := strings.Contains(serving, "reexec-to-main=")
	if reexeced != fipsNode {
		t.Errorf("FIPS node %v, PID 1 re-executed %v; want a re-exec only on a FIPS node:\n%s\n%s", fipsNode, reexeced, starting, serving)
	}
	if !strings.Contains(console, "moved to a pivot_root-capable root") {
		t.Errorf("no root move logged:\n%s", bootTailLines(console, 40))
	}
}

// bootConsoleLine returns the first console line containing marker, or "".
func bootConsoleLine(console, marker string) string {
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, marker) {
			return l
		}
	}
	return ""
}

// bootTailLines is the last n lines of s.
func bootTailLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
