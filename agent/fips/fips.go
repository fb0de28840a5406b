// Package fips checks that the agent's Go cryptography runs in the same FIPS
// 140 mode as the guest kernel.
//
// The kernel's mode comes from fips=1 on the command line and shows in
// /proc/sys/crypto/fips_enabled; the agent's from crypto/fips140 (the agent
// is built with GOFIPS140=v1.0.0 and a //go:debug fips140=off default;
// GODEBUG=fips140=on turns it on).
// FIPS mode is a property of the node: one image serves both kinds, the host
// adds fips=1 on FIPS nodes, and the agent, as PID 1, re-executes itself with
// the GODEBUG that Follow computes so that its mode matches the kernel's.
// A kernel in FIPS mode with an agent outside it is always refused: that is
// the direction that silently weakens a FIPS guest. An agent in FIPS mode
// on a non-FIPS kernel is refused in the guest (strict), where kernel and
// agent ship together and must agree, and only reported on a development
// host, where the host's kernel is not ours to configure.
package fips

import (
	"crypto/fips140"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrMismatch is returned when the kernel and the agent disagree.
var ErrMismatch = errors.New("FIPS mode mismatch between kernel and agent")

// Status is the FIPS state seen at start-up.
type Status struct {
	Kernel bool // /proc/sys/crypto/fips_enabled is 1
	Agent  bool // crypto/fips140.Enabled()
}

// Mode names the agent's mode for logs and GetGuestDetails.
func (s Status) Mode() string {
	switch {
	case s.Kernel && s.Agent:
		return "enabled"
	case !s.Kernel && !s.Agent:
		return "disabled"
	case s.Agent:
		return "agent-only"
	}
	return "kernel-only"
}

// Read reads the kernel's mode below procRoot ("/proc" in production). A
// missing file means the kernel has no FIPS support, so FIPS is off.
func Read(procRoot string) (Status, error) {
	s := Status{Agent: fips140.Enabled()}
	b, err := os.ReadFile(filepath.Join(procRoot, "sys/crypto/fips_enabled"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return s, fmt.Errorf("read kernel FIPS mode: %w", err)
	default:
		switch v := strings.TrimSpace(string(b)); v {
		case "1":
			s.Kernel = true
		case "0":
		default:
			return s, fmt.Errorf("read kernel FIPS mode: unexpected value %q", v)
		}
	}
	return s, nil
}

// Verify reports whether the agent may serve with status s. strict is true
// in the guest (see the package comment).
func Verify(s Status, strict bool) error {
	if s.Kernel && !s.Agent {
		return fmt.Errorf("kernel has fips_enabled=1 but the agent's Go cryptography is not in FIPS mode: %w", ErrMismatch)
	}
	if strict && !s.Kernel && s.Agent {
		return fmt.Errorf("agent's Go cryptography is in FIPS mode but the kernel has fips_enabled=0 (boot with fips=1, or run the agent with GODEBUG=fips140=off): %w", ErrMismatch)
	}
	return nil
}

// Follow returns the GODEBUG value under which the agent's Go cryptography
// runs in the kernel's FIPS mode (fips140=on with fips=1, off without), and
// whether the running agent must re-execute for it (Go reads fips140 only at
// start). godebug is the current GODEBUG; its other settings are kept. An
// explicit fips140 setting in it (GODEBUG=fips140=... on the kernel command
// line, which the kernel hands to PID 1) is the operator's choice and is
// left alone: if it disagrees with the kernel, Verify refuses to serve.
func Follow(godebug string, s Status) (value string, reexec bool) {
	var keep []string
	for _, kv := range strings.Split(godebug, ",") {
		if kv == "" {
			continue
		}
		if name, _, _ := strings.Cut(kv, "="); name == "fips140" {
			return godebug, false
		}
		keep = append(keep, kv)
	}
	mode := "fips140=off"
	if s.Kernel {
		mode = "fips140=on"
	}
	return strings.Join(append(keep, mode), ","), s.Agent != s.Kernel
}
