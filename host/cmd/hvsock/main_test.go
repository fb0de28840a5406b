package main

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func waitSocket(t *testing.T, path string) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
}

func TestUsage(t *testing.T) {
	if err := run([]string{"--socket", "/tmp/x"}); err == nil {
		t.Fatal("missing --uds accepted")
	}
	if err := run([]string{"--socket", "/tmp/x", "--uds", "/tmp/y", "--guest-cid", "1"}); err == nil {
		t.Fatal("guest CID 1 accepted")
	}
}

func TestExitsWhenFrontEndLeaves(t *testing.T) {
	dir := t.TempDir()
	vhost := filepath.Join(dir, "vhost.sock")
	done := make(chan error, 1)
	go func() { done <- run([]string{"--socket", vhost, "--uds", filepath.Join(dir, "vsock.sock")}) }()
	waitSocket(t, vhost)
	c, err := net.Dial("unix", vhost)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running after the front-end left")
	}
	if _, err := os.Stat(filepath.Join(dir, "vsock.sock")); !os.IsNotExist(err) {
		t.Fatalf("hybrid socket left behind: %v", err)
	}
}

func TestExitsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	vhost := filepath.Join(dir, "vhost.sock")
	done := make(chan error, 1)
	go func() { done <- run([]string{"--socket", vhost, "--uds", filepath.Join(dir, "vsock.sock")}) }()
	waitSocket(t, vhost)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM ignored")
	}
}
