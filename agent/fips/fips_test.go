package fips

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func writeKernel(t *testing.T, v string) string {
	t.Helper()
	root := t.TempDir()
	if v == "" {
		return root
	}
	dir := filepath.Join(root, "sys/crypto")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fips_enabled"), []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestReadKernelMode(t *testing.T) {
	for _, tc := range []struct {
		file    string
		want    bool
		wantErr bool
	}{
		{"1\n", true, false},
		{"0\n", false, false},
		{"", false, false}, // absent: no FIPS support in the kernel
		{"yes\n", false, true},
	} {
		s, err := Read(writeKernel(t, tc.file))
		if (err != nil) != tc.wantErr {
			t.Fatalf("file %q: err = %v, want error %v", tc.file, err, tc.wantErr)
		}
		if err == nil && s.Kernel != tc.want {
			t.Errorf("file %q: Kernel = %v, want %v", tc.file, s.Kernel, tc.want)
		}
	}
}

func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		s        Status
		strict   bool
		mismatch bool
		mode     string
	}{
		{Status{Kernel: true, Agent: true}, true, false, "enabled"},
		{Status{}, true, false, "disabled"},
		{Status{Kernel: true}, false, true, "kernel-only"},
		{Status{Kernel: true}, true, true, "kernel-only"},
		{Status{Agent: true}, true, true, "agent-only"},
		{Status{Agent: true}, false, false, "agent-only"},
	} {
		err := Verify(tc.s, tc.strict)
		if got := errors.Is(err, ErrMismatch); got != tc.mismatch {
			t.Errorf("Verify(%+v, strict=%v) = %v, want mismatch %v", tc.s, tc.strict, err, tc.mismatch)
		}
		if m := tc.s.Mode(); m != tc.mode {
			t.Errorf("Mode(%+v) = %q, want %q", tc.s, m, tc.mode)
		}
	}
}

func TestFollow(t *testing.T) {
	for _, tc := range []struct {
		godebug string
		s       Status
		want    string
		reexec  bool
	}{
		// Built with GOFIPS140 (agent on): a non-FIPS node turns it off.
		{"", Status{Kernel: false, Agent: true}, "fips140=off", true},
		{"", Status{Kernel: true, Agent: true}, "fips140=on", false},
		// Built without the module default (agent off): a FIPS node turns it on.
		{"", Status{Kernel: true, Agent: false}, "fips140=on", true},
		{"", Status{}, "fips140=off", false},
		// Other settings are kept.
		{"madvdontneed=1", Status{Agent: true}, "madvdontneed=1,fips140=off", true},
		// An explicit setting is the operator's: left alone, Verify judges it.
		{"fips140=off", Status{Kernel: true, Agent: false}, "fips140=off", false},
		{"x=1,fips140=on", Status{Kernel: false, Agent: true}, "x=1,fips140=on", false},
	} {
		got, reexec := Follow(tc.godebug, tc.s)
		if got != tc.want || reexec != tc.reexec {
			t.Errorf("Follow(%q, %+v) = %q, %v; want %q, %v", tc.godebug, tc.s, got, reexec, tc.want, tc.reexec)
		}
	}
}
