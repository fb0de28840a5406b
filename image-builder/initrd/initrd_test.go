package initrd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
)

// staticBinary builds the stand-in init, a static Go program.
func staticBinary(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "init")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "github.com/sandbox-guest/sandbox-guest/image-builder/internal/testinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build stand-in init: %v\n%s", err, b)
	}
	return out
}

func testRootfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
		"etc/hosts":  "127.0.0.1 localhost\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o664); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readArchive(t *testing.T, path, format string) map[string]cpio.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	switch format {
	case Zstd:
		d, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r = d
	case Gzip:
		g, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = g
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress: %v", err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(data)))
	if err != nil {
		t.Fatalf("read cpio: %v", err)
	}
	out := map[string]cpio.Record{}
	for _, r := range recs {
		out[r.Name] = r
	}
	return out
}

func TestBuildReproducible(t *testing.T) {
	agent := staticBinary(t)
	rootfs := testRootfs(t)
	dir := t.TempDir()
	var sums []string
	for i := range 2 {
		if i == 1 {
			// New mtimes and permissions must not change the output.
			later := time.Now().Add(time.Hour)
			for _, p := range []string{agent, filepath.Join(rootfs, "etc/hosts")} {
				if err := os.Chtimes(p, later, later); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(filepath.Join(rootfs, "etc/hosts"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out := filepath.Join(dir, "initrd"+string(rune('a'+i)))
		res, err := Build(Options{Agent: agent, RootfsDir: rootfs, Compression: Zstd, Output: out})
		if err != nil {
			t.Fatalf("Build #%d: %v", i, err)
		}
		if res.Size == 0 || res.CPIOSize <= res.Size {
			t.Errorf("sizes: compressed %d, cpio %d", res.Size, res.CPIOSize)
		}
		sums = append(sums, res.SHA256)
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds differ: %s vs %s", sums[0], sums[1])
	}

	recs := readArchive(t, filepath.Join(dir, "initrda"), Zstd)
	init, ok := recs["init"]
	if !ok || init.Mode&cpio.S_IFMT != cpio.S_IFREG || init.Mode&0o777 != 0o755 {
		t.Fatalf("/init missing or not an executable file: %+v", init.Info)
	}
	for _, name := range []string{"etc/passwd", "etc/group", "etc/hosts", "dev/console", "proc", "sys", "tmp"} {
		r, ok := recs[name]
		if !ok {
			t.Errorf("%s missing from the initramfs", name)
			continue
		}
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d, want zeros", name, r.MTime, r.UID, r.GID)
		}
	}
	if m := recs["etc/passwd"].Mode & 0o777; m != 0o644 {
		t.Errorf("etc/passwd mode %o, want 644", m)
	}
	if c := recs["dev/console"]; c.Mode&cpio.S_IFMT != cpio.S_IFCHR || c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("dev/console = %+v, want char 5:1", c.Info)
	}
	for name := range recs {
		if strings.HasPrefix(name, "bin/") {
			t.Errorf("non-debug image contains %s", name)
		}
	}
}

func TestBuildDebugGzip(t *testing.T) {
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Skip("busybox-static not installed")
	}
	if err := checkStatic(busybox); err != nil {
		t.Skipf("installed busybox is not static: %v", err)
	}
	agent := staticBinary(t)
	out := filepath.Join(t.TempDir(), "initrd.gz")
	if _, err := Build(Options{Agent: agent, Debug: true, Busybox: busybox, Compression: Gzip, Output: out}); err != nil {
		t.Fatal(err)
	}
	recs := readArchive(t, out, Gzip)
	if _, ok := recs["bin/busybox"]; !ok {
		t.Fatal("debug image lacks bin/busybox")
	}
	sh, ok := recs["bin/sh"]
	if !ok || sh.Mode&cpio.S_IFMT != cpio.S_IFLNK {
		t.Fatalf("bin/sh missing or not a symlink: %+v", sh.Info)
	}
	target, err := io.ReadAll(io.NewSectionReader(sh, 0, int64(sh.FileSize)))
	if err != nil || string(target) != "busybox" {
		t.Errorf("bin/sh -> %q (%v), want busybox", target, err)
	}
}

func TestBuildRefusesDynamicAgent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs a Linux host binary")
	}
	// /bin/sh on the build host is dynamically linked (dash or bash).
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh")
	}
	if checkStatic(sh) == nil {
		t.Skip("/bin/sh is static here")
	}
	_, err = Build(Options{Agent: sh, Compression: Zstd, Output: filepath.Join(t.TempDir(), "x")})
	if !errors.Is(err, ErrNotStatic) {
		t.Fatalf("Build with dynamic agent = %v, want ErrNotStatic", err)
	}
}

func TestBuildErrors(t *testing.T) {
	agent := staticBinary(t)
	if _, err := Build(Options{Agent: agent, Compression: "lzma", Output: filepath.Join(t.TempDir(), "x")}); !errors.Is(err, ErrCompression) {
		t.Errorf("unknown compression: %v", err)
	}
	rootfs := t.TempDir()
	if err := os.WriteFile(filepath.Join(rootfs, "init"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(Options{Agent: agent, RootfsDir: rootfs, Compression: Zstd, Output: filepath.Join(t.TempDir(), "x")}); !errors.Is(err, ErrRootfsEntry) {
		t.Errorf("rootfs providing /init: %v, want ErrRootfsEntry", err)
	}
	if _, err := Build(Options{Agent: filepath.Join(t.TempDir(), "missing"), Compression: Zstd, Output: filepath.Join(t.TempDir(), "x")}); err == nil {
		t.Error("missing agent accepted")
	}
}
