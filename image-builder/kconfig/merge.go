package kconfig

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Generate runs the kernel's own kconfig in srcDir: allnoconfig with the
// merged fragment as KCONFIG_ALLCONFIG, so that every option not asked for
// takes its allnoconfig value and every asked-for option is applied only
// where Kconfig allows it. The result is objDir/.config. objDir keeps the
// source tree clean and holds the compiled kconfig tools between runs.
func Generate(ctx context.Context, srcDir, objDir, arch, fragment string) (Config, []byte, error) {
	if err := os.MkdirAll(objDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create kconfig object dir: %w", err)
	}
	frag := filepath.Join(objDir, "merged-fragment.config")
	if err := os.WriteFile(frag, []byte(fragment), 0o644); err != nil {
		return nil, nil, fmt.Errorf("write merged fragment: %w", err)
	}
	cmd := exec.CommandContext(ctx, "make", "-s", "-C", srcDir, "O="+objDir, "ARCH="+arch,
		"KCONFIG_ALLCONFIG="+frag, "allnoconfig")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("make allnoconfig in %s: %w\n%s", srcDir, err, out.Bytes())
	}
	data, err := os.ReadFile(filepath.Join(objDir, ".config"))
	if err != nil {
		return nil, nil, fmt.Errorf("read generated .config: %w", err)
	}
	cfg, err := ParseConfig(bytes.NewReader(data))
	if err != nil {
		return nil, nil, fmt.Errorf("parse generated .config: %w", err)
	}
	return cfg, data, nil
}

// ReadFragments parses the fragment files in order and merges them.
func ReadFragments(files []string) ([]Request, error) {
	var all []Request
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read fragment: %w", err)
		}
		reqs, err := ParseFragment(f, bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		all = append(all, reqs...)
	}
	return Merge(all)
}

// FragmentFiles lists dir/*.conf in name order.
func FragmentFiles(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil {
		return nil, fmt.Errorf("list fragments in %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.conf fragments in %s", dir)
	}
	return files, nil // Glob returns sorted names
}
