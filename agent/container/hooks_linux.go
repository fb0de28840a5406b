package container

import (
	"context"
	"log/slog"
	"strings"

	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Hooks are the agent's own lifecycle hooks for a container (the guest's,
// named at CreateSandbox). Each receives the container's OCI state. They
// run in the agent, outside the container's namespaces.
type Hooks struct {
	// Prestart runs once the container's namespaces exist and before its
	// rootfs becomes its root; an error fails the create (OCI).
	Prestart func(*specs.State) error
	// Poststart runs once the user program has started, before
	// StartContainer returns; Poststop once the container is destroyed.
	// Their errors are logged only (OCI: a warning, the operation goes on).
	Poststart func(*specs.State) error
	Poststop  func(*specs.State) error
}

// prestartHook hands Hooks.Prestart to libcontainer, which runs it in the
// agent between creating the namespaces and pivoting into the rootfs, with
// the init's pid in the state. It is a type of its own so that libcontainer's
// complaint that it cannot write it to state.json can be told apart from
// any other warning (see slogHook.Fire): the agent never reloads a
// container from state.json, so nothing is lost.
type prestartHook func(*specs.State) error

func (h prestartHook) Run(s *specs.State) error { return h(s) }

// unserializableHookWarning is libcontainer's warning for prestartHook.
const unserializableHookWarning = "cannot serialize hook of type container.prestartHook"

func isPrestartHookWarning(msg string) bool {
	return strings.HasPrefix(msg, unserializableHookWarning)
}

// withBundle replaces the bundle label specconv derives from the agent's
// working directory with the real bundle path, which the hooks' state
// carries.
func withBundle(labels []string, bundle string) []string {
	if bundle == "" {
		return labels
	}
	out := labels[:0]
	for _, l := range labels {
		if !strings.HasPrefix(l, "bundle=") {
			out = append(out, l)
		}
	}
	return append(out, "bundle="+bundle)
}

// addHooks installs the hooks libcontainer runs (prestart) into cfg.
func addHooks(cfg *configs.Config, h Hooks) {
	if h.Prestart == nil {
		return
	}
	if cfg.Hooks == nil {
		cfg.Hooks = configs.Hooks{}
	}
	cfg.Hooks[configs.Prestart] = append(cfg.Hooks[configs.Prestart], prestartHook(h.Prestart))
}

// runLoggedHook runs a poststart or poststop hook with st; a failure is
// logged, never returned.
func (c *Container) runLoggedHook(name string, run func(*specs.State) error, st specs.State, status specs.ContainerState) {
	if run == nil {
		return
	}
	st.Status = status
	if status == specs.StateStopped {
		st.Pid = 0
	}
	if err := run(&st); err != nil {
		c.log.LogAttrs(context.Background(), slog.LevelWarn, "container hook failed",
			slog.String("container", c.id), slog.String("stage", name), slog.String("error", err.Error()))
	}
}
