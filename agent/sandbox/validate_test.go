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
