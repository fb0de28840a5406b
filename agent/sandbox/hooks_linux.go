package sandbox

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/hooks"
)

// containerHooks turns the sandbox's guest hooks into a container's. Each
// hook is bounded by its own timeout, not by the request that triggers it:
// a poststop hook must run even when RemoveContainer's caller went away.
func containerHooks(set hooks.Set) container.Hooks {
	if set.Empty() {
		return container.Hooks{}
	}
	stage := func(st hooks.Stage) func(*specs.State) error {
		if len(set.Hooks(st)) == 0 {
			return nil
		}
		return func(s *specs.State) error { return set.Run(context.Background(), st, s) }
	}
	return container.Hooks{
		Prestart:  stage(hooks.Prestart),
		Poststart: stage(hooks.Poststart),
		Poststop:  stage(hooks.Poststop),
	}
}
