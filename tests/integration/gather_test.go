package integration

import (
	"encoding/json"
	"github.com/sandbox-guest/sandbox-guest/host/gather"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guest/sandbox-guest/agent/logging"
	"github.com/sandbox-guest/sandbox-guest/agent/wiring"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// agentctl gather against the agent as kata-agent assembles it, logging
// into a ring as kata-agent does: one archive with the guest's parts,
// every container's state and statistics, the agent's own recent log
// lines (a request that failed a moment before is among them), and the
// host kit's logs from the VM directory.
func TestAgentctlGather(t *testing.T) {
	ring := logging.NewRing(logging.DefaultRingLines, logging.DefaultRingBytes)
	a := startAgent(t, wiring.WithLog(logging.New(ring, slog.LevelInfo)), wiring.WithAgentLog(ring))
	a.run("g-run", a.spec(false, "/bin/sleep", "1000"))
	a.run("g-done", a.spec(false, "/bin/sh", "-c", "exit 4"))
	a.create("g-new", a.spec(false, "/bin/true"))
	if code := a.wait("g-done", "g-done"); code != 4 {
		t.Fatalf("g-done exit status %d", code)
	}
	// A failed request is logged at warn level: it must reach agent.log.
	if _, err := a.cli.StartContainer(ctxT(t, 10*time.Second), &pb.StartContainerRequest{ContainerId: "gather-marker"}); err == nil {
		t.Fatal("StartContainer of an unknown container succeeded")
	}

	vm := t.TempDir()
	for _, n := range []string{"qemu.log", "virtiofsd.log", "console.log"} {
		os.WriteFile(filepath.Join(vm, n), []byte("host kit "+n+"\n"), 0o644)
	}
	out := t.TempDir()
	stdout, stderr, rc := runAgentctl(t, a.sock, "--json", "gather", "-o", out, "--vm-dir", vm)
	if rc != 0 {
		t.Fatalf("gather rc=%d stderr=%s", rc, stderr)
	}
	var res struct {
		Archive string   `json:"archive"`
		Errors  []string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("gather --json printed %q: %v", stdout, err)
	}
	if len(res.Errors) != 0 {
		t.Errorf("failed parts: %v", res.Errors)
	}
	m := readTarGz(t, res.Archive)
	for _, name := range []string{"summary.json", "errors.txt", "guest-details.json", "metrics.txt", "interfaces.json", "routes.json",
		"containers.json", "containers/g-run/state.json", "containers/g-run/stats.json", "containers/g-done/state.json",
		"agent.log", "host/qemu.log", "host/virtiofsd.log", "host/console.log"} {
		if _, ok := m[name]; !ok {
			t.Errorf("archive lacks %s", name)
		}
	}
	var run, done map[string]any
	json.Unmarshal([]byte(m["containers/g-run/state.json"]), &run)
	json.Unmarshal([]byte(m["containers/g-done/state.json"]), &done)
	if run["state"] != "running" || run["init_pid"] == nil {
		t.Errorf("g-run state %v", run)
	}
	if done["state"] != "stopped" || done["exit_code"] != 4.0 {
		t.Errorf("g-done state %v", done)
	}
	var created map[string]any
	json.Unmarshal([]byte(m["containers/g-new/state.json"]), &created)
	if created["state"] != "created" {
		t.Errorf("g-new state %v", created)
	}
	var stats map[string]any
	if err := json.Unmarshal([]byte(m["containers/g-run/stats.json"]), &stats); err != nil || stats["cgroup_stats"] == nil {
		t.Errorf("g-run stats %v %v", stats, err)
	}
	if !strings.Contains(m["agent.log"], `"msg":"request failed"`) || !strings.Contains(m["agent.log"], "gather-marker") {
		t.Errorf("agent.log lacks the failed request:\n%s", m["agent.log"])
	}
	if !strings.Contains(m["metrics.txt"], "kata_agent_goroutines") {
		t.Errorf("metrics.txt:\n%s", m["metrics.txt"])
	}
	if m["host/console.log"] != "host kit console.log\n" {
		t.Errorf("console.log = %q", m["host/console.log"])
	}
	if m["errors.txt"] != "" {
		t.Errorf("errors.txt = %q", m["errors.txt"])
	}
}

// readTarGz returns the members of a tar.gz by their name below its top
// directory.
func readTarGz(t *testing.T, p string) map[string]string {
	t.Helper()
	_, m, err := gather.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
