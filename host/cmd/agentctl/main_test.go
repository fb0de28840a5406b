package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckAndVersion(t *testing.T) {
	addr := serveFake(t, &fakeAgent{}, nil)
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
	if stdout.String() != "agent version: 9.8.7\napi version: 0.0.7\n" {
		t.Errorf("version printed %q", stdout.String())
	}
}

func TestUnimplementedMethodReported(t *testing.T) {
	addr := serveFake(t, &fakeAgent{}, nil)
	var stdout, stderr bytes.Buffer
	if rc := agentctl([]string{"--addr", addr, "metrics"}, &stdout, &stderr); rc == 0 {
		t.Fatal("metrics from an agent without GetMetrics exited 0")
	}
	if !strings.Contains(stderr.String(), "GetMetrics") {
		t.Errorf("stderr = %q, want the method named", stderr.String())
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
