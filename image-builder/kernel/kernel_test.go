package kernel

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const makefileHead = `# SPDX-License-Identifier: GPL-2.0
VERSION = 6
PATCHLEVEL = 12
SUBLEVEL = 117
EXTRAVERSION =
NAME = Baby Opossum Posse
`

func TestParseMakefileVersion(t *testing.T) {
	v, err := ParseMakefileVersion(strings.NewReader(makefileHead))
	if err != nil {
		t.Fatal(err)
	}
	if v.String() != "6.12.117" || v.Series() != "6.12" {
		t.Fatalf("version = %s series %s", v, v.Series())
	}
	if err := v.CheckSeries("6.12"); err != nil {
		t.Errorf("CheckSeries(6.12) = %v", err)
	}
	if err := v.CheckSeries("6.1"); !errors.Is(err, ErrWrongSeries) || !strings.Contains(err.Error(), "6.12.117") {
		t.Errorf("CheckSeries(6.1) = %v, want ErrWrongSeries naming 6.12.117", err)
	}
	if _, err := ParseMakefileVersion(strings.NewReader("VERSION = 6\n")); !errors.Is(err, ErrNoVersion) {
		t.Errorf("incomplete Makefile: %v, want ErrNoVersion", err)
	}
	if _, err := ParseMakefileVersion(strings.NewReader("VERSION = six\nPATCHLEVEL = 1\nSUBLEVEL = 0\n")); err == nil {
		t.Error("non-numeric VERSION accepted")
	}
}

// fakeTarball writes an xz tarball shaped like Debian's linux-source one.
func fakeTarball(t *testing.T, makefile string) string {
	t.Helper()
	for _, tool := range []string{"tar", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	top := filepath.Join(dir, "linux-source-6.12")
	if err := os.MkdirAll(filepath.Join(top, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A nested Makefile first: only the top-level one carries the version.
	if err := os.WriteFile(filepath.Join(top, "kernel", "Makefile"), []byte("VERSION = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "Makefile"), []byte(makefile), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "linux-source-6.12.tar.xz")
	cmd := exec.Command("tar", "-cJf", tarball, "-C", dir, "linux-source-6.12/kernel", "linux-source-6.12/Makefile")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	return tarball
}

func TestTarballVersionAndExtract(t *testing.T) {
	tarball := fakeTarball(t, makefileHead)
	ctx := context.Background()
	v, err := TarballVersion(ctx, tarball)
	if err != nil {
		t.Fatal(err)
	}
	if v.String() != "6.12.117" {
		t.Fatalf("TarballVersion = %s", v)
	}
	cache := t.TempDir()
	dir, hit, err := Extract(ctx, tarball, v, cache)
	if err != nil || hit {
		t.Fatalf("first Extract = %s, %v, %v", dir, hit, err)
	}
	if dir != filepath.Join(cache, "src", "linux-6.12.117") {
		t.Errorf("source dir = %s", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "kernel", "Makefile")); err != nil {
		t.Errorf("tree not extracted: %v", err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("source dir mode = %v (%v), want 0755 so other users can read the cache", st.Mode(), err)
	}
	if _, hit, err := Extract(ctx, tarball, v, cache); err != nil || !hit {
		t.Errorf("second Extract hit=%v err=%v, want a cache hit", hit, err)
	}
}

func TestExtractRejectsVersionMismatch(t *testing.T) {
	tarball := fakeTarball(t, makefileHead)
	_, _, err := Extract(context.Background(), tarball, Version{6, 12, 1, ""}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "6.12.117") {
		t.Fatalf("Extract with wrong expected version = %v", err)
	}
}

func TestTarballVersionMissing(t *testing.T) {
	if _, err := TarballVersion(context.Background(), filepath.Join(t.TempDir(), "nope.tar.xz")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing tarball = %v", err)
	}
}

func TestBuildCacheHit(t *testing.T) {
	cache := t.TempDir()
	config := []byte("CONFIG_64BIT=y\n")
	v := Version{6, 12, 117, ""}
	dir := filepath.Join(cache, "kernel", "6.12.117-"+ConfigHash(config))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bzImage"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".config"), config, 0o644); err != nil {
		t.Fatal(err)
	}
	// SrcDir does not exist: a hit must not run make.
	a, err := Build(context.Background(), BuildOptions{SrcDir: "/nonexistent", CacheDir: cache, Version: v, Config: config})
	if err != nil || !a.Hit || a.BzImage != filepath.Join(dir, "bzImage") {
		t.Fatalf("Build = %+v, %v; want a cache hit", a, err)
	}
	// A different config is a miss and tries to build (and fails here).
	if _, err := Build(context.Background(), BuildOptions{SrcDir: "/nonexistent", CacheDir: cache, Version: v, Config: []byte("CONFIG_64BIT=n\n")}); err == nil {
		t.Fatal("Build with an uncached config and no source succeeded")
	}
}
