package container

import (
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A NUL byte in an exec's args, environment or cwd is the host's mistake
// (InvalidArgument), found before anything starts; it used to surface as
// an Internal failure to start.
func TestNewProcessRefusesNUL(t *testing.T) {
	for name, sp := range map[string]*specs.Process{
		"args": {Args: []string{"tr\x00ue"}, Cwd: "/"},
		"env":  {Args: []string{"true"}, Env: []string{"A=b\x00c"}, Cwd: "/"},
		"cwd":  {Args: []string{"true"}, Cwd: "/a\x00b"},
	} {
		if _, err := newLibcontainerProcess(sp, false); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := newLibcontainerProcess(&specs.Process{Args: []string{"true"}, Env: []string{"A=b"}, Cwd: "/"}, false); err != nil {
		t.Errorf("a plain process: %v", err)
	}
}
