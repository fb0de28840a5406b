package sandbox

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidateSpec(t *testing.T) {
	proc := &specs.Process{Args: []string{"sh"}}
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		want string // "" accepts
	}{
		{"nil", nil, "no OCI spec"},
		{"no process", &specs.Spec{Root: &specs.Root{Path: "/r"}}, "spec has no process"},
		{"no args", &specs.Spec{Process: &specs.Process{}, Root: &specs.Root{Path: "/r"}}, "process has no args"},
		{"no root", &specs.Spec{Process: proc}, "spec has no rootfs"},
		{"empty root", &specs.Spec{Process: proc, Root: &specs.Root{}}, "spec has no rootfs"},
		{"relative root", &specs.Spec{Process: proc, Root: &specs.Root{Path: "r"}}, "not an absolute path"},
		{"ok", &specs.Spec{Process: proc, Root: &specs.Root{Path: "/r"}}, ""},
	} {
		err := validateSpec("c1", tc.spec)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want InvalidArgument %q", tc.name, err, tc.want)
		}
	}
}

// Lookups check an id only when it is not found (ids in the sandbox were
// checked when added): a hostile id is still refused as invalid, a valid
// unknown one is not found, and one being created is a precondition.
func TestLookupErrors(t *testing.T) {
	s := newTestSandbox(t, Config{})
	s.containers["creating"] = nil
	for _, tc := range []struct {
		cid, exec string
		is        func(error) bool
		want      string
	}{
		{"..etc", "", errdefs.IsInvalidArgument, `".."`},
		{"a/b", "", errdefs.IsInvalidArgument, `"/"`},
		{"", "", errdefs.IsInvalidArgument, "empty"},
		{"missing", "", errdefs.IsNotFound, `container "missing"`},
		{"creating", "", errdefs.IsFailedPrecondition, "still being created"},
	} {
		_, _, err := s.Process(tc.cid, tc.exec)
		if err == nil || !tc.is(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Process(%q, %q) = %v, want an error with %q of the right kind", tc.cid, tc.exec, err, tc.want)
		}
	}
}
