package storage

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func noEntry(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatalf("%s is there (%v), want nothing", p, err)
	}
}

// A transfer that fails midway leaves no temporary file behind: the
// runtime gives up on its first error, so nothing would remove it later.
func TestCopyFailureLeavesNoTemporaryFile(t *testing.T) {
	root := t.TempDir()
	c := &FileCopier{Root: root}
	reg := uint32(unix.S_IFREG | 0o644)
	uid, gid := int32(os.Getuid()), int32(os.Getgid())
	p := filepath.Join(root, "c1/file")

	// First chunk lands in the temporary file; a bad second chunk ends it.
	if err := c.Copy(CopyRequest{Path: p, FileSize: 6, FileMode: reg, UID: uid, GID: gid, Data: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p + ".tmp"); err != nil {
		t.Fatalf("first chunk not written: %v", err)
	}
	if err := c.Copy(CopyRequest{Path: p, FileSize: 6, FileMode: reg, UID: uid, GID: gid, Offset: 5, Data: []byte("def")}); err == nil {
		t.Fatal("chunk past the file size accepted")
	}
	noEntry(t, p+".tmp")
	noEntry(t, p)

	// The last step fails: a non-empty directory is in the way.
	blocked := filepath.Join(root, "c1/blocked")
	if err := os.MkdirAll(filepath.Join(blocked, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.Copy(CopyRequest{Path: blocked, FileSize: 2, FileMode: reg, UID: uid, GID: gid, Data: []byte("hi")}); err == nil {
		t.Fatal("file renamed over a non-empty directory")
	}
	noEntry(t, blocked+".tmp")

	// A complete file still works, and leaves only itself.
	if err := c.Copy(CopyRequest{Path: p, FileSize: 3, FileMode: reg, UID: uid, GID: gid, Data: []byte("xyz")}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "xyz" {
		t.Fatalf("file = %q, %v", b, err)
	}
	noEntry(t, p+".tmp")

	// A file the host copied under a name that looks temporary is not
	// the copier's: a failing chunk of its namesake leaves it alone.
	own := filepath.Join(root, "c1/own")
	if err := c.Copy(CopyRequest{Path: own + ".tmp", FileSize: 4, FileMode: reg, UID: uid, GID: gid, Data: []byte("mine")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Copy(CopyRequest{Path: own, FileSize: 1, FileMode: reg, UID: uid, GID: gid, Offset: 1, Data: []byte("xx")}); err == nil {
		t.Fatal("chunk past the file size accepted")
	}
	if b, err := os.ReadFile(own + ".tmp"); err != nil || string(b) != "mine" {
		t.Fatalf("host's own .tmp file: %q, %v", b, err)
	}
}
