package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/server"
	"github.com/sandbox-guest/sandbox-guest/agent/version"
)

func serveAgent(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.sock")
	l, err := server.Listen(config.Addr{Scheme: "unix", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx, l)
	t.Cleanup(cancel)
	return "unix://" + path
}

func TestCheckAndVersion(t *testing.T) {
	addr := serveAgent(t)
	var stdout, stderr bytes.Buffer
	if rc := agentctl([]string{"--addr", addr, "check"}, &stdout, &stderr); rc != 0 {
		t.Fatalf("check rc=%d stderr=%s", rc, stderr.String())
	}
	if strings.TrimSpace(stdout.String()) != "SERVING" {
		t.Errorf("check printed %q", stdout.String())
	}
	stdout.Reset()
	if rc := agentctl([]string{"--addr", addr, "version"}, &stdout, &stderr); rc != 0 {
		t.Fatalf("version rc=%d stderr=%s", rc, stderr.String())
	}
	if !strings.Contains(stdout.String(), version.Version) || !strings.Contains(stdout.String(), version.APIVersion) {
		t.Errorf("version printed %q", stdout.String())
	}
}

func TestUnreachableAgent(t *testing.T) {
	var stdout, stderr bytes.Buffer
	start := time.Now()
	rc := agentctl([]string{"--addr", "unix://" + filepath.Join(t.TempDir(), "none.sock"), "--timeout", "300ms", "check"}, &stdout, &stderr)
	if rc == 0 {
		t.Fatal("check of an absent agent exited 0")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v with a 300ms timeout", d)
	}
	if !strings.Contains(stderr.String(), "cannot reach the agent") {
		t.Errorf("stderr = %q, want a clear message", stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if rc := agentctl(nil, &stdout, &stderr); rc != 2 {
		t.Errorf("no command: rc=%d", rc)
	}
	if rc := agentctl([]string{"frobnicate"}, &stdout, &stderr); rc != 2 || !strings.Contains(stderr.String(), "unknown command") {
		t.Errorf("unknown command: rc=%d stderr=%q", rc, stderr.String())
	}
}
