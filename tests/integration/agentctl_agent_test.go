package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/storage"
	"github.com/sandbox-guest/sandbox-guest/agent/version"
	"github.com/sandbox-guest/sandbox-guest/agent/wiring"
)

// agentctl copy-file against the agent's CopyFile: the tree arrives as
// it was, and an escape is refused with the agent's explanation.
func TestAgentctlCopyFileTree(t *testing.T) {
	dir := t.TempDir()
	roots := hostRoots(dir)
	shared := roots.Shared
	os.MkdirAll(shared, 0o755)
	sock, _ := serveAgent(t, dir, config.Default(), roots)
	src := t.TempDir()
	big := bytes.Repeat([]byte("z"), 2<<20+17) // three 1 MiB chunks
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub/big"), big, 0o600)
	os.WriteFile(filepath.Join(src, "empty"), nil, 0o644)
	os.Symlink("sub/big", filepath.Join(src, "link"))
	dst := filepath.Join(shared, "cid/vol")
	if _, stderr, rc := runAgentctl(t, sock, "copy-file", src, dst); rc != 0 {
		t.Fatalf("rc=%d stderr=%s", rc, stderr)
	}
	got, err := os.ReadFile(filepath.Join(dst, "sub/big"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big file: len %d err %v", len(got), err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "sub/big")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "empty")); err != nil || fi.Size() != 0 {
		t.Fatalf("empty file: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "sub/big" {
		t.Fatalf("link %q %v", l, err)
	}
	_, stderr, rc := runAgentctl(t, sock, "copy-file", filepath.Join(src, "empty"), shared+"/../x")
	if rc == 0 || !strings.Contains(stderr, "escapes the shared directory") {
		t.Fatalf("escape: rc=%d stderr %q", rc, stderr)
	}
}

// agentctl's hot-plug and metrics commands against the agent's onliner on
// a fake sysfs.
func TestAgentctlHotplugAgainstAgent(t *testing.T) {
	dir := t.TempDir()
	roots := hostRoots(dir)
	roots.Proc = filepath.Join(dir, "proc")
	sysfs, proc := roots.Sysfs, roots.Proc
	os.MkdirAll(proc, 0o755)
	for rel, content := range map[string]string{
		"devices/system/memory/block_size_bytes": "8000000\n",
		"devices/system/memory/probe":            "",
		"devices/system/memory/memory32/state":   "offline\n",
		"devices/system/cpu/cpu0/online":         "1\n",
		"devices/system/cpu/cpu1/online":         "1\n",
		"devices/system/cpu/online":              "0-1\n",
		"devices/system/cpu/possible":            "0-1\n",
	} {
		p := filepath.Join(sysfs, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), 0o644)
	}
	os.WriteFile(filepath.Join(proc, "loadavg"), []byte("0.10 0.20 0.30 1/20 300\n"), 0o644)
	cfg := config.Default()
	cfg.HotplugTimeout = 200 * time.Millisecond
	sock, _ := serveAgent(t, dir, cfg, roots, wiring.WithFIPS(true))
	read := func(rel string) string {
		b, _ := os.ReadFile(filepath.Join(sysfs, rel))
		return string(b)
	}
	// --cpus is the sandbox's vCPU total, as the runtime sends it: 2 is
	// already reached here, 3 is more than the guest can ever have.
	if _, stderr, rc := runAgentctl(t, sock, "online-mem", "--cpus", "2"); rc != 0 {
		t.Fatalf("online-mem rc=%d: %s", rc, stderr)
	}
	if got := read("devices/system/memory/memory32/state"); got != "online" {
		t.Errorf("memory32 state = %q", got)
	}
	if _, stderr, rc := runAgentctl(t, sock, "online-mem", "--cpus", "3"); rc != 1 || !strings.Contains(stderr, "at most 2") {
		t.Errorf("online-mem --cpus 3: rc=%d stderr=%q, want the guest's limit of 2 named", rc, stderr)
	}
	stdout, stderr, rc := runAgentctl(t, sock, "guest-details")
	if rc != 0 {
		t.Fatalf("guest-details rc=%d: %s", rc, stderr)
	}
	for _, line := range []string{"mem_block_size: 128 MiB (0x8000000)", "support_mem_hotplug_probe: true", "version: " + version.Version, "extra_features: fips", "storage_handlers: " + strings.Join(storage.Drivers(), ",")} {
		if !strings.Contains(stdout, line+"\n") {
			t.Errorf("guest-details lacks %q:\n%s", line, stdout)
		}
	}
	if _, stderr, rc := runAgentctl(t, sock, "mem-probe", "0x108000000"); rc != 0 {
		t.Fatalf("mem-probe rc=%d: %s", rc, stderr)
	}
	if got := read("devices/system/memory/probe"); got != "0x108000000" {
		t.Errorf("probe got %q", got)
	}
	if _, stderr, rc := runAgentctl(t, sock, "mem-probe", "0x108000001"); rc != 1 || !strings.Contains(stderr, "not aligned") {
		t.Errorf("unaligned mem-probe: rc=%d stderr=%q", rc, stderr)
	}
	stdout, _, rc = runAgentctl(t, sock, "metrics")
	if rc != 0 || !regexp.MustCompile(`\nkata_agent_goroutines [1-9][0-9]*\n`).MatchString(stdout) || !strings.Contains(stdout, "\n"+`kata_guest_load{item="load15"} 0.3`+"\n") {
		t.Errorf("metrics rc=%d output:\n%s", rc, stdout)
	}
}
