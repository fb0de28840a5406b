package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/hotplug"
	"github.com/sandbox-guest/sandbox-guest/agent/metrics"
	"github.com/sandbox-guest/sandbox-guest/agent/server"
)

func serveHotplugAgent(t *testing.T, sysfs, proc string) string {
	t.Helper()
	o, err := hotplug.New(hotplug.Options{SysfsRoot: sysfs, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "a.sock")
	l, err := server.Listen(config.Addr{Scheme: "unix", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{
		Hotplug:   o,
		Metrics:   metrics.New(metrics.Options{ProcRoot: proc, Goroutines: func() int { return 2 }}),
		AgentInfo: server.AgentInfo{Version: "1.2.3", StorageHandlers: []string{"virtio-fs", "9p"}, FIPS: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx, l)
	t.Cleanup(cancel)
	return "unix://" + path
}

func put(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHotplugCommands(t *testing.T) {
	sysfs, proc := t.TempDir(), t.TempDir()
	put(t, sysfs, "devices/system/memory/block_size_bytes", "8000000\n")
	put(t, sysfs, "devices/system/memory/probe", "")
	put(t, sysfs, "devices/system/memory/memory32/state", "offline\n")
	put(t, sysfs, "devices/system/cpu/cpu0/online", "1\n")
	put(t, sysfs, "devices/system/cpu/cpu1/online", "1\n")
	put(t, sysfs, "devices/system/cpu/online", "0-1\n")
	put(t, sysfs, "devices/system/cpu/possible", "0-1\n")
	put(t, proc, "loadavg", "0.10 0.20 0.30 1/20 300\n")
	addr := serveHotplugAgent(t, sysfs, proc)

	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		rc := agentctl(append([]string{"--addr", addr}, args...), &stdout, &stderr)
		return rc, stdout.String(), stderr.String()
	}

	// --cpus is the sandbox's vCPU total, as the runtime sends it: 2 is
	// already reached here, 3 is more than the guest can ever have.
	if rc, _, stderr := run("online-mem", "--cpus", "2"); rc != 0 {
		t.Fatalf("online-mem rc=%d: %s", rc, stderr)
	}
	if got := get(t, filepath.Join(sysfs, "devices/system/memory/memory32/state")); got != "online" {
		t.Errorf("memory32 state = %q", got)
	}
	if rc, _, stderr := run("online-mem", "--cpus", "3"); rc != 1 || !strings.Contains(stderr, "at most 2") {
		t.Errorf("online-mem --cpus 3: rc=%d stderr=%q, want the guest's limit of 2 named", rc, stderr)
	}
	if rc, _, stderr := run("online-mem", "extra"); rc != 1 || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Errorf("online-mem extra: rc=%d stderr=%q", rc, stderr)
	}

	rc, stdout, stderr := run("guest-details")
	if rc != 0 {
		t.Fatalf("guest-details rc=%d: %s", rc, stderr)
	}
	for _, line := range []string{
		"mem_block_size_bytes: 134217728 (0x8000000)",
		"support_mem_hotplug_probe: true",
		"version: 1.2.3",
		"storage_handlers: virtio-fs,9p",
		"extra_features: fips",
	} {
		if !strings.Contains(stdout, line+"\n") {
			t.Errorf("guest-details lacks %q:\n%s", line, stdout)
		}
	}

	if rc, _, stderr := run("mem-probe", "0x108000000"); rc != 0 {
		t.Fatalf("mem-probe rc=%d: %s", rc, stderr)
	}
	if got := get(t, filepath.Join(sysfs, "devices/system/memory/probe")); got != "0x108000000" {
		t.Errorf("probe got %q", got)
	}
	if rc, _, stderr := run("mem-probe", "0x108000001"); rc != 1 || !strings.Contains(stderr, "not aligned") {
		t.Errorf("unaligned mem-probe: rc=%d stderr=%q", rc, stderr)
	}
	if rc, _, stderr := run("mem-probe", "lots"); rc != 1 || !strings.Contains(stderr, `address "lots"`) {
		t.Errorf("bad mem-probe address: rc=%d stderr=%q", rc, stderr)
	}

	rc, stdout, stderr = run("metrics")
	if rc != 0 {
		t.Fatalf("metrics rc=%d: %s", rc, stderr)
	}
	if !strings.Contains(stdout, "\nkata_agent_goroutines 2\n") || !strings.Contains(stdout, "\n"+`kata_guest_load{item="load15"} 0.3`+"\n") {
		t.Errorf("metrics output:\n%s", stdout)
	}
}
