package manifest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadAgentBuildInfo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "init")
	// Without -trimpath: with it, Go does not record -ldflags.
	cmd := exec.Command("go", "build", "-ldflags", "-X main.Version=1.2.3",
		"-o", bin, "github.com/sandbox-guest/sandbox-guest/image-builder/internal/testinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFIPS140=v1.0.0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	a, err := ReadAgent(bin)
	if err != nil {
		t.Fatal(err)
	}
	if a.Path != "github.com/sandbox-guest/sandbox-guest/image-builder/internal/testinit" {
		t.Errorf("path = %q", a.Path)
	}
	if a.Version != "1.2.3" {
		t.Errorf("version = %q, want the -X stamped 1.2.3", a.Version)
	}
	if a.GoVersion == "" || a.Settings["CGO_ENABLED"] != "0" {
		t.Errorf("go version %q settings %v", a.GoVersion, a.Settings)
	}
	if len(a.GOFIPS140) < len("v1.0.0") || a.GOFIPS140[:6] != "v1.0.0" {
		t.Errorf("GOFIPS140 = %q, want v1.0.0...", a.GOFIPS140)
	}
}

// The builder itself links third-party modules: they must be listed with sums.
func TestReadAgentModules(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "image-builder")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/sandbox-guest/sandbox-guest/image-builder/cmd/image-builder")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	a, err := ReadAgent(bin)
	if err != nil {
		t.Fatal(err)
	}
	if a.Size == 0 || len(a.SHA256) != 64 {
		t.Errorf("agent hash/size = %q/%d", a.SHA256, a.Size)
	}
	found := false
	for _, m := range a.Modules {
		if m.Path == "github.com/klauspost/compress" {
			found = true
			if m.Version == "" || !strings.HasPrefix(m.Sum, "h1:") {
				t.Errorf("module %+v lacks version or sum", m)
			}
		}
	}
	if !found {
		t.Errorf("github.com/klauspost/compress not in %+v", a.Modules)
	}
}

func TestReadAgentNotGo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAgent(p); err == nil {
		t.Fatal("ReadAgent accepted a non-Go file")
	}
}

func TestWriteAndHash(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(f, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := HashFile(f)
	if err != nil {
		t.Fatal(err)
	}
	// sha256("abc")
	if a.Name != "vmlinuz" || a.Size != 3 || a.SHA256 != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("HashFile = %+v", a)
	}
	out := filepath.Join(dir, "manifest.json")
	if err := Write(out, Manifest{Artifacts: []Artifact{a}, FIPSCapable: true}); err != nil {
		t.Fatal(err)
	}
	var back Manifest
	data, _ := os.ReadFile(out)
	if err := json.Unmarshal(data, &back); err != nil || len(back.Artifacts) != 1 || !back.FIPSCapable {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
}
