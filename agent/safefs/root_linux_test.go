package safefs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMkdirAllInRootStaysInside(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "not-yet") // created on first use
	outside := t.TempDir()
	if _, _, err := MkdirAllInRoot(root, root+"/a", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "a/evil")); err != nil {
		t.Fatal(err)
	}
	// The link resolves to root/<outside>, which is missing: refused.
	if f, _, err := MkdirAllInRoot(root, root+"/a/evil/x", 0o755); err == nil {
		f.Close()
		t.Fatal("created through a dangling link")
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Fatal("directory created through the symlink outside the root")
	}
	if err := os.MkdirAll(filepath.Join(root, outside), 0o755); err != nil {
		t.Fatal(err)
	}
	f, created, err := MkdirAllInRoot(root, root+"/a/evil/x", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := realPath(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, outside, "x"); got != want || !created {
		t.Fatalf("created %v at %s, want %s inside the root", created, got, want)
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Fatal("directory created through the symlink outside the root")
	}
	if _, _, err := MkdirAllInRoot(root, "/elsewhere", 0o755); err == nil {
		t.Fatal("path outside the root accepted")
	}
	h, err := OpenInRoot(root, root+"/a/evil/x")
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
}
