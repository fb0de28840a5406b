package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRunUnknownCommand(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"frobnicate"}, &out)
	if err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Fatalf("run(frobnicate) = %v", err)
	}
	if !strings.Contains(out.String(), "kernel-config") {
		t.Errorf("usage not printed:\n%s", out.String())
	}
}

func TestProgressReportsFailureAndTime(t *testing.T) {
	var out bytes.Buffer
	p := &progress{w: &out}
	if err := p.step("first", func() (string, error) { return "detail", nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := p.step("second", func() (string, error) { return "", boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "second") {
		t.Fatalf("step error = %v", err)
	}
	s := out.String()
	for _, want := range []string{"==> first", "detail", "done in", "==> second", "FAILED after"} {
		if !strings.Contains(s, want) {
			t.Errorf("progress output lacks %q:\n%s", want, s)
		}
	}
}

func TestImageRejectsMissingAgentBeforeWork(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"initrd", "--agent", "/nonexistent/agent", "--out", t.TempDir() + "/x"}, &out)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/agent") {
		t.Fatalf("initrd with a missing agent = %v", err)
	}
}
