package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

func TestWatchableCopiesAndFollowsChanges(t *testing.T) {
	m, fm, root := newFakeManager(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "key"), []byte("v1"), 0o640)
	os.Symlink("key", filepath.Join(src, "..data"))
	mp := filepath.Join(root, "shared/containers/watchable/cm")
	st := &pb.Storage{Driver: "watchable-bind", Source: src, Fstype: "bind", MountPoint: mp}
	if err := m.Mount(context.Background(), "c1", []*pb.Storage{st}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fm.calls[0], "mount tmpfs tmpfs "+filepath.Join(root, "shared/containers/watchable")) {
		t.Fatalf("watchable tree not backed by tmpfs: %v", fm.calls)
	}
	if b, _ := os.ReadFile(filepath.Join(mp, "key")); string(b) != "v1" {
		t.Fatalf("initial copy %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(mp, "key")); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if l, _ := os.Readlink(filepath.Join(mp, "..data")); l != "key" {
		t.Fatalf("symlink %q", l)
	}
	// A host-side update, a new file and a removal show up on the next poll.
	os.WriteFile(filepath.Join(src, "key"), []byte("v2"), 0o640)
	future := time.Now().Add(time.Minute)
	os.Chtimes(filepath.Join(src, "key"), future, future)
	os.WriteFile(filepath.Join(src, "new"), []byte("n"), 0o644)
	os.Remove(filepath.Join(src, "..data"))
	m.watcher().poll()
	if b, _ := os.ReadFile(filepath.Join(mp, "key")); string(b) != "v2" {
		t.Fatalf("update not copied: %q", b)
	}
	if _, err := os.Stat(filepath.Join(mp, "new")); err != nil {
		t.Fatal("new file not copied")
	}
	if _, err := os.Lstat(filepath.Join(mp, "..data")); err == nil {
		t.Fatal("removed link still there")
	}
	// Past the entry limit it becomes a bind mount.
	for i := 0; i < MaxWatchedEntries; i++ {
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%d", i)), nil, 0o644)
	}
	m.watcher().poll()
	if _, ok := fm.mounted[mp]; !ok || !contains(fm.calls, "mount  "+src+" "+mp+" ") {
		t.Fatalf("no bind fallback: %v", fm.calls)
	}
	if err := m.Release(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mp); err == nil {
		t.Fatal("target left after release")
	}
	if m.watcher().stop != nil {
		t.Fatal("poller still running with nothing to watch")
	}
}

func TestWatchableTooLargeBindsAtOnce(t *testing.T) {
	m, fm, root := newFakeManager(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "big"), make([]byte, MaxWatchedBytes+1), 0o644)
	mp := filepath.Join(root, "shared/containers/watchable/big")
	if err := m.Mount(context.Background(), "c1", []*pb.Storage{{Driver: "watchable-bind", Source: src, MountPoint: mp}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := fm.mounted[mp]; !ok {
		t.Fatalf("oversized source not bind-mounted: %v", fm.calls)
	}
	if m.watcher().stop != nil {
		t.Fatal("poller started for a bind-mounted storage")
	}
}

func contains(calls []string, s string) bool {
	for _, c := range calls {
		if c == s {
			return true
		}
	}
	return false
}
