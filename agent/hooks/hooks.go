// Package hooks finds and runs the guest's own OCI hooks: executables in
// the directory CreateSandbox names (guest_hook_path), laid out as the
// Kata agent does, one subdirectory per stage:
//
//	<dir>/prestart/*   after a container's namespaces exist, before its
//	                   rootfs becomes its root; a failure fails the create
//	<dir>/poststart/*  after its program started; a failure is logged
//	<dir>/poststop/*   after it was destroyed; a failure is logged
//
// The directory is scanned once, when the sandbox is created. Each hook
// runs in the agent's namespaces, as path with argv [name, stage], an
// empty environment, the container's OCI state as JSON on stdin, and a
// timeout, in its own process group so that the timeout ends whatever it
// started too.
package hooks

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Stage is one of the lifecycle points a guest hook runs at; its name is
// also the hook directory's subdirectory.
type Stage string

// The stages of the guest hook layout.
const (
	Prestart  Stage = "prestart"
	Poststart Stage = "poststart"
	Poststop  Stage = "poststop"
)

// Stages lists the stages in the order a container passes them.
var Stages = []Stage{Prestart, Poststart, Poststop}

// DefaultTimeout is how long one hook may run (the Kata agent's default).
const DefaultTimeout = 10 * time.Second

// MaxEntries bounds the entries of one stage directory: each hook runs
// for every container, so a directory beyond this is a mistake (or an
// attack), not a configuration.
const MaxEntries = 64

// Hook is one guest hook.
type Hook struct {
	Path    string
	Args    []string
	Timeout time.Duration
}

// Set is the guest hooks of a sandbox, by stage, each in name order.
type Set struct {
	hooks map[Stage][]Hook
}

// Hooks returns the hooks of a stage.
func (s Set) Hooks(st Stage) []Hook { return s.hooks[st] }

// Empty tells whether there is no hook at all.
func (s Set) Empty() bool {
	for _, h := range s.hooks {
		if len(h) > 0 {
			return false
		}
	}
	return true
}

// Spec returns the hooks as a runtime-spec Hooks for a bundle's
// config.json (nil without hooks), so a bundle says what runs.
func (s Set) Spec() *specs.Hooks {
	if s.Empty() {
		return nil
	}
	conv := func(hs []Hook) []specs.Hook {
		var out []specs.Hook
		for _, h := range hs {
			t := int(h.Timeout / time.Second)
			out = append(out, specs.Hook{Path: h.Path, Args: slices.Clone(h.Args), Env: []string{}, Timeout: &t})
		}
		return out
	}
	h := &specs.Hooks{Poststart: conv(s.hooks[Poststart]), Poststop: conv(s.hooks[Poststop])}
	//lint:ignore SA1019 the stage is the one Kata's layout names, run at the same point
	h.Prestart = conv(s.hooks[Prestart])
	return h
}

// Scan reads the hook directory dir. An empty dir means no hooks; a
// missing directory (or stage subdirectory) means none either, and is
// logged. dir must be an absolute path without ".." and not a symlink;
// entries that are not executable regular files (symlinks included) are
// skipped with a log line.
func Scan(dir string, log *slog.Logger) (Set, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if dir == "" {
		return Set{}, nil
	}
	if !filepath.IsAbs(dir) {
		return Set{}, fmt.Errorf("guest hook path %q is not absolute: %w", dir, errdefs.ErrInvalidArgument)
	}
	if strings.ContainsRune(dir, 0) {
		return Set{}, fmt.Errorf("guest hook path %q contains a NUL byte: %w", dir, errdefs.ErrInvalidArgument)
	}
	if slices.Contains(strings.Split(dir, "/"), "..") {
		return Set{}, fmt.Errorf("guest hook path %q contains \"..\": %w", dir, errdefs.ErrInvalidArgument)
	}
	dir = filepath.Clean(dir)
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		log.Info("guest hook directory does not exist: no guest hooks", "path", dir)
		return Set{}, nil
	case err != nil:
		return Set{}, fmt.Errorf("guest hook path %s: %w", dir, err)
	case fi.Mode()&os.ModeSymlink != 0:
		return Set{}, fmt.Errorf("guest hook path %s is a symlink: %w", dir, errdefs.ErrInvalidArgument)
	case !fi.IsDir():
		return Set{}, fmt.Errorf("guest hook path %s is not a directory: %w", dir, errdefs.ErrInvalidArgument)
	}
	s := Set{hooks: map[Stage][]Hook{}}
	for _, st := range Stages {
		hs, err := scanStage(filepath.Join(dir, string(st)), st, log)
		if err != nil {
			return Set{}, err
		}
		s.hooks[st] = hs
	}
	return s, nil
}

func scanStage(dir string, st Stage, log *slog.Logger) ([]Hook, error) {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("guest %s hooks %s: %w", st, dir, err)
	case !fi.IsDir(): // a symlink included
		log.Warn("guest hook stage is not a directory: skipped", "path", dir, "mode", fi.Mode().String())
		return nil, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("guest %s hooks %s: %w", st, dir, err)
	}
	defer f.Close()
	// One more than allowed tells a full directory from an oversized one
	// without reading all of a huge one.
	ents, err := f.ReadDir(MaxEntries + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("guest %s hooks %s: %w", st, dir, err)
	}
	if len(ents) > MaxEntries {
		return nil, fmt.Errorf("guest %s hooks %s: more than %d entries: %w", st, dir, MaxEntries, errdefs.ErrInvalidArgument)
	}
	var hooks []Hook
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		info, err := e.Info() // lstat: a symlink stays a symlink
		if err != nil {
			log.Warn("guest hook vanished while scanning: skipped", "path", p, "error", err)
			continue
		}
		if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
			log.Warn("guest hook is not an executable regular file: skipped", "path", p, "mode", info.Mode().String())
			continue
		}
		hooks = append(hooks, Hook{Path: p, Args: []string{e.Name(), string(st)}, Timeout: DefaultTimeout})
		log.Info("guest hook found", "stage", string(st), "path", p)
	}
	slices.SortFunc(hooks, func(a, b Hook) int { return strings.Compare(a.Path, b.Path) })
	return hooks, nil
}
