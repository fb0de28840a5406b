// Package manifest describes a built guest image: every artifact's hash and
// size, the kernel version, and the agent's bill of materials read from the
// Go build information embedded in its binary.
package manifest

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Artifact is one file of the image.
type Artifact struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Module is a Go module linked into the agent.
type Module struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	Sum     string `json:"sum,omitempty"`
	// Replace is set when the module was replaced in go.mod.
	Replace *Module `json:"replace,omitempty"`
}

// Agent describes the agent binary.
type Agent struct {
	SHA256    string            `json:"sha256"`
	Size      int64             `json:"size"`
	Path      string            `json:"path"` // main package path
	Module    string            `json:"module"`
	Version   string            `json:"version"` // main module version or VCS revision
	GoVersion string            `json:"go_version"`
	GOFIPS140 string            `json:"gofips140"` // "" when built without the FIPS module
	Settings  map[string]string `json:"build_settings"`
	Modules   []Module          `json:"modules"`
}

// Kernel describes the kernel.
type Kernel struct {
	Version string `json:"version"`
	Series  string `json:"series"`
	Source  string `json:"source"`
	// Package is the Debian package and version the source came from, when known.
	Package    string `json:"package,omitempty"`
	ConfigHash string `json:"config_hash"`
}

// Initrd describes how the initramfs was built.
type Initrd struct {
	Compression string `json:"compression"`
	Debug       bool   `json:"debug"`
	CPIOSize    int64  `json:"cpio_size"`
	// AgentImageSize is the agent's squashfs image inside the initrd (0:
	// the agent is /init).
	AgentImageSize int64 `json:"agent_image_size,omitempty"`
}

// Manifest is build/guest/manifest.json.
type Manifest struct {
	Artifacts []Artifact `json:"artifacts"`
	Kernel    Kernel     `json:"kernel"`
	Initrd    Initrd     `json:"initrd"`
	Agent     Agent      `json:"agent"`
	Cmdline   string     `json:"cmdline"`
	// FIPSCapable: the kernel has CRYPTO_FIPS and the agent carries Go's
	// FIPS module, so the host may boot the image with fips=1.
	FIPSCapable      bool   `json:"fips_capable"`
	BuilderGoVersion string `json:"builder_go_version"`
}

// HashFile returns the artifact entry for path, named by its base name.
func HashFile(path string) (Artifact, error) {
	f, err := os.Open(path)
	if err != nil {
		return Artifact{}, fmt.Errorf("hash artifact: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Artifact{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return Artifact{Name: filepath.Base(path), SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

var ldflagsVersion = regexp.MustCompile(`-X[ =]?\S*\.Version=(\S+)`)

// ReadAgent reads the Go build information from the agent binary.
func ReadAgent(path string) (Agent, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return Agent{}, fmt.Errorf("read Go build info from %s: %w", path, err)
	}
	h, err := HashFile(path)
	if err != nil {
		return Agent{}, err
	}
	a := Agent{
		SHA256:    h.SHA256,
		Size:      h.Size,
		Modules:   []Module{},
		Path:      bi.Path,
		Module:    bi.Main.Path,
		Version:   bi.Main.Version,
		GoVersion: bi.GoVersion,
		Settings:  map[string]string{},
	}
	for _, s := range bi.Settings {
		a.Settings[s.Key] = s.Value
		switch s.Key {
		case "GOFIPS140":
			a.GOFIPS140 = s.Value
		case "vcs.revision":
			if a.Version == "" || a.Version == "(devel)" {
				a.Version = s.Value
			}
		}
	}
	if a.Version == "" || a.Version == "(devel)" {
		// A version stamped with -X .../version.Version=V (recorded only
		// without -trimpath; callers may override Version afterwards).
		if m := ldflagsVersion.FindStringSubmatch(a.Settings["-ldflags"]); m != nil {
			a.Version = strings.Trim(m[1], `'"`)
		}
	}
	for _, d := range bi.Deps {
		m := Module{Path: d.Path, Version: d.Version, Sum: d.Sum}
		if d.Replace != nil {
			m.Replace = &Module{Path: d.Replace.Path, Version: d.Replace.Version, Sum: d.Replace.Sum}
		}
		a.Modules = append(a.Modules, m)
	}
	sort.Slice(a.Modules, func(i, j int) bool { return a.Modules[i].Path < a.Modules[j].Path })
	return a, nil
}

// Write writes m as indented JSON.
func Write(path string, m Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}
