//go:build e2e

package e2e

import (
	"encoding/json"
	"github.com/sandbox-guest/sandbox-guest/host/gather"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// Diagnostics (issue 15): agentctl gather against the QEMU guest with the
// host kit's logs.
func init() {
	registerSharedGuestTest("Gather", (*suite).testGather)
}

// agentctl gather writes one archive with the guest's parts, the running
// sleeper's state and statistics, the agent's recent log lines (with a
// request that failed just before), and QEMU's, virtiofsd's and the
// console's logs from the VM's work directory.
func (s *suite) testGather(t *testing.T) {
	sleeper := s.sleeperContainer(t)
	if _, err := s.cli.Agent.StartContainer(s.rpcCtx(t), &pb.StartContainerRequest{ContainerId: "e2e-gather-marker"}); err == nil {
		t.Fatal("StartContainer of an unknown container succeeded")
	}
	bin := filepath.Join(t.TempDir(), "agentctl")
	build := exec.Command("go", "build", "-o", bin, "github.com/sandbox-guest/sandbox-guest/host/cmd/agentctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agentctl: %v\n%s", err, out)
	}
	out := t.TempDir()
	cmd := exec.Command(bin, "--addr", s.vm.AgentAddress(agentPort), "--timeout", "60s", "--json",
		"gather", "-o", out, "--vm-dir", s.vm.Dir(), "--console-log", s.vm.ConsolePath())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("agentctl gather: %v\n%s", err, stderr.String())
	}
	t.Logf("gather took %v", time.Since(start).Round(time.Millisecond))
	var res struct {
		Archive string   `json:"archive"`
		Bytes   int64    `json:"bytes"`
		Errors  []string `json:"errors"`
	}
	if err := json.Unmarshal(stdout, &res); err != nil {
		t.Fatalf("gather --json printed %q: %v", stdout, err)
	}
	t.Logf("archive %s: %d bytes; failed parts: %q", res.Archive, res.Bytes, res.Errors)

	m := gatherMembers(t, res.Archive)
	for _, name := range []string{"summary.json", "errors.txt", "guest-details.json", "metrics.txt", "interfaces.json", "routes.json",
		"containers.json", "containers/" + sleeper + "/state.json", "containers/" + sleeper + "/stats.json",
		"agent.log", "host/qemu.log", "host/virtiofsd.log", "host/console.log"} {
		if _, ok := m[name]; !ok {
			t.Errorf("archive lacks %s", name)
		}
	}
	// Containers of earlier subtests may be gone or stopped; the guest's
	// parts and the logs must not fail.
	for _, e := range res.Errors {
		if !strings.HasPrefix(e, "containers/") {
			t.Errorf("part failed: %s", e)
		}
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(m["containers/"+sleeper+"/state.json"]), &st); err != nil || st["state"] != "running" {
		t.Errorf("sleeper state %v %v", st, err)
	}
	var details map[string]any
	if err := json.Unmarshal([]byte(m["guest-details.json"]), &details); err != nil || details["agent_details"] == nil {
		t.Errorf("guest-details.json: %v\n%s", err, m["guest-details.json"])
	}
	if !strings.Contains(m["agent.log"], "e2e-gather-marker") {
		t.Errorf("agent.log lacks the failed request (%d bytes):\n%s", len(m["agent.log"]), gatherTail(m["agent.log"], 2048))
	}
	// The kernel boots quiet; the agent logs to the console.
	if !strings.Contains(m["host/console.log"], `"msg":"serving"`) {
		t.Errorf("console.log lacks the agent's serving line (%d bytes):\n%s", len(m["host/console.log"]), gatherTail(m["host/console.log"], 2048))
	}
	var ifs map[string]any
	if err := json.Unmarshal([]byte(m["interfaces.json"]), &ifs); err != nil {
		t.Errorf("interfaces.json: %v\n%s", err, m["interfaces.json"])
	}
}

func gatherTail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// gatherMembers reads a gather archive: member name below the top
// directory → content.
func gatherMembers(t *testing.T, p string) map[string]string {
	t.Helper()
	_, m, err := gather.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
