package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/server"
)

func serveStorageAgent(t *testing.T, opts server.Options) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.sock")
	l, err := server.Listen(config.Addr{Scheme: "unix", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx, l)
	t.Cleanup(cancel)
	return "unix://" + path
}

func TestCopyFileTree(t *testing.T) {
	shared := t.TempDir()
	addr := serveStorageAgent(t, server.Options{CopyFileRoot: shared})
	src := t.TempDir()
	big := bytes.Repeat([]byte("z"), 2*copyChunk+17) // three chunks
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub/big"), big, 0o600)
	os.WriteFile(filepath.Join(src, "empty"), nil, 0o644)
	os.Symlink("sub/big", filepath.Join(src, "link"))
	var stdout, stderr bytes.Buffer
	dst := filepath.Join(shared, "cid/vol")
	if rc := agentctl([]string{"--addr", addr, "copy-file", src, dst}, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc=%d stderr=%s", rc, stderr.String())
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
	// Escapes are refused by the agent and reported.
	stderr.Reset()
	if rc := agentctl([]string{"--addr", addr, "copy-file", filepath.Join(src, "empty"), shared + "/../x"}, &stdout, &stderr); rc == 0 {
		t.Fatal("escape accepted")
	}
	if !strings.Contains(stderr.String(), "escapes the shared directory") {
		t.Fatalf("stderr %q", stderr.String())
	}
}

func TestVolumeStatsAndUsage(t *testing.T) {
	addr := serveStorageAgent(t, server.Options{})
	var stdout, stderr bytes.Buffer
	if rc := agentctl([]string{"--addr", addr, "volume-stats", t.TempDir()}, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc=%d %s", rc, stderr.String())
	}
	if !strings.Contains(stdout.String(), "BYTES") || !strings.Contains(stdout.String(), "INODES") {
		t.Fatalf("output %q", stdout.String())
	}
	for _, bad := range [][]string{{"set-time", "x"}, {"reseed", "0"}, {"copy-file", "a"}} {
		if rc := agentctl(append([]string{"--addr", addr}, bad...), &stdout, &stderr); rc == 0 {
			t.Fatalf("%v accepted", bad)
		}
	}
}
