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
