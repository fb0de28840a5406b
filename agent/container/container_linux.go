package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/configs/validate"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Reaper is what a container needs from the agent's child reaper: a start
// window during which nothing is reaped, and the hand-back of waited pids.
type Reaper interface {
	Begin() (end func(owned ...int))
	Disown(pid int)
}

// Options configure a new container.
type Options struct {
	ID string
	// Streams replace the init process's stdio pipes (stream ports);
	// Create closes the agent's copies.
	Streams Streams
	// Spec is the runtime spec; Root.Path must be an absolute, existing
	// directory and Process non-nil (the caller validates).
	Spec *specs.Spec
	// StateRoot is libcontainer's state directory (shared by containers).
	StateRoot string
	// CgroupsPath is the container's cgroup path; relative paths are
	// placed under the agent's own (v1) or parent (v2) cgroup.
	CgroupsPath string
	Reaper      Reaper
	Log         *slog.Logger
	// OnOOM is called (from the watcher goroutine) for each OOM kill.
	OnOOM func(id string)
	// HoldInit keeps a pidfd of the init process (see InitRunning), for a
	// container whose pid namespace others join.
	HoldInit bool
	// Execs bounds exec'd processes and sets when finished processes are
	// released (zero: defaults).
	Execs ExecPolicy
	// Bundle is the bundle directory the hooks' OCI state names.
	Bundle string
	// Hooks are the agent's hooks for this container; the spec's own
	// hooks are ignored (they are the host's, see sandbox).
	Hooks Hooks
}

// Container is one libcontainer container and its processes.
type Container struct {
	id     string
	log    *slog.Logger
	reaper Reaper
	lc     *libcontainer.Container
	init   *Process
	oom    *oomWatcher
	policy ExecPolicy

	cgroupPaths map[string]string // by controller; "" is the unified one

	holdInit   bool
	initHandle *pidHandle // with holdInit; closed by Destroy under mu

	// cfgMu serialises the calls that change libcontainer's config (Set;
	// Pause and Resume record the freezer state in it) or read it without
	// libcontainer's own lock (Config, Stats).
	cfgMu sync.Mutex
	// followedCpus is the cpuset FollowOnlineCPUs last set ("" if none);
	// guarded by cfgMu.
	followedCpus string

	mu      sync.Mutex
	started bool
	removed bool
	execs   map[string]*Process

	rootfs   string // the agent's path of the container's root
	hooks    Hooks
	hookSt   specs.State // the state at create, for poststart and poststop
	poststop sync.Once
}

// ID is the container id.
func (c *Container) ID() string { return c.id }

// Rootfs is the container's root directory as the agent sees it.
func (c *Container) Rootfs() string { return c.rootfs }

// Create creates the container and its init process, which waits for
// Start. Stdio pipes (or the terminal) exist from now on.
func Create(opts Options) (_ *Container, retErr error) {
	defer opts.Streams.Close() // the init process has its own copies
	if opts.Spec == nil || opts.Spec.Process == nil {
		return nil, fmt.Errorf("container %q: spec has no process: %w", opts.ID, errdefs.ErrInvalidArgument)
	}
	if opts.Spec.Linux == nil {
		opts.Spec.Linux = &specs.Linux{}
	}
	opts.Spec.Linux.CgroupsPath = opts.CgroupsPath
	// Only Options.Hooks run: the spec's own hooks are not handed to libcontainer.
	spec := *opts.Spec
	spec.Hooks = nil
	cfg, err := libcontainerConfig(opts.ID, &spec)
	if err != nil {
		return nil, err
	}
	cfg.Labels = withBundle(cfg.Labels, opts.Bundle)
	addHooks(cfg, opts.Hooks)
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	lc, err := libcontainer.Create(opts.StateRoot, opts.ID, cfg)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return nil, fmt.Errorf("container %q: %w", opts.ID, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("container %q: create: %w", opts.ID, err)
	}
	c := &Container{id: opts.ID, log: log, reaper: opts.Reaper, lc: lc, execs: map[string]*Process{}, holdInit: opts.HoldInit, policy: opts.Execs.withDefaults(), hooks: opts.Hooks, rootfs: opts.Spec.Root.Path}
	defer func() {
		if retErr != nil {
			c.initHandle.close()
			_ = lc.Destroy()
			// libcontainer keeps the exec fifo open when the init fails to
			// start; only the finalizer of the dropped container closes
			// it. Collect now so failures do not pile up descriptors.
			lc = nil
			runtime.GC()
		}
	}()
	p, err := c.startProcess(opts.ID, opts.Spec.Process, true, opts.Streams)
	if err != nil {
		return nil, err
	}
	c.init = p
	if opts.Hooks.Poststart != nil || opts.Hooks.Poststop != nil {
		st, err := lc.OCIState()
		if err != nil {
			return nil, fmt.Errorf("container %q: state for hooks: %w", opts.ID, err)
		}
		c.hookSt = *st
	}
	// Recorded once: State takes libcontainer's lock, which a stuck
	// freezer operation can hold.
	if st, err := lc.State(); err == nil {
		c.cgroupPaths = st.CgroupPaths
	}
	if opts.OnOOM != nil {
		c.oom = watchOOM(opts.ID, c.cgroupPaths, func() { opts.OnOOM(opts.ID) }, log)
	}
	return c, nil
}

// libcontainerConfig converts a spec to libcontainer's configuration and
// validates it, so that a bad spec is reported as the caller's mistake
// (InvalidArgument), not an internal failure of Create.
func libcontainerConfig(id string, spec *specs.Spec) (*configs.Config, error) {
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName: id,
		Spec:       spec,
		// Keyrings are not namespaced; a session keyring per container
		// keeps them apart as runc does by default.
		NoNewKeyring: false,
	})
	if err != nil {
		return nil, fmt.Errorf("container %q: convert spec: %v: %w", id, err, errdefs.ErrInvalidArgument)
	}
	if err := validate.Validate(cfg); err != nil {
		return nil, fmt.Errorf("container %q: invalid spec: %v: %w", id, err, errdefs.ErrInvalidArgument)
	}
	return cfg, nil
}

// Start runs the init process's program (the OCI "start").
func (c *Container) Start() error {
	if err := c.start(); err != nil {
		return err
	}
	// After the lock: poststart hooks may take their whole timeout.
	c.runLoggedHook("poststart", c.hooks.Poststart, c.hookSt, specs.StateRunning)
	return nil
}

func (c *Container) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		return fmt.Errorf("container %q is being removed: %w", c.id, errdefs.ErrNotFound)
	}
	if c.started {
		return fmt.Errorf("container %q is already started: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if c.init.Exited() {
		return fmt.Errorf("container %q: init exited before start: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	// Exec only opens the exec fifo the waiting init writes to: no fork,
	// nothing that blocks for long.
	if err := c.lc.Exec(); err != nil {
		return fmt.Errorf("container %q: start: %w", c.id, err)
	}
	c.started = true
	return nil
}

// Process finds a process: "" or the container id is the init process.
func (c *Container) Process(execID string) (*Process, error) {
	if execID == "" || execID == c.id {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.execs[execID]
	if p == nil {
		return nil, fmt.Errorf("exec %q in container %q: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// Destroy kills every process, waits for the init process until ctx ends,
// then removes the container's cgroup and state and closes all stdio.
func (c *Container) Destroy(ctx context.Context) error {
	c.mu.Lock()
	c.removed = true
	c.mu.Unlock()
	// A frozen cgroup (v1) would hold the SIGKILL: thaw it. Reading the
	// freezer state can block while a freeze is in progress, so this
	// runs aside and the wait below stays bounded by ctx.
	thawed := make(chan struct{})
	go func() {
		defer close(thawed)
		c.cfgMu.Lock()
		defer c.cfgMu.Unlock()
		if st, err := c.lc.Status(); err == nil && st == libcontainer.Paused {
			_ = c.lc.Resume()
		}
	}()
	if !c.init.Exited() || c.hasProcesses() {
		_ = c.signalAll(unix.SIGKILL)
		if !c.init.Exited() {
			_ = c.init.lp.Signal(unix.SIGKILL)
		}
	}
	select {
	case <-c.init.done:
	case <-ctx.Done():
		return fmt.Errorf("container %q: processes did not exit in time: %w", c.id, errdefs.ErrUnavailable)
	}
	select {
	case <-thawed:
	case <-ctx.Done():
		return fmt.Errorf("container %q: cgroup did not thaw in time: %w", c.id, errdefs.ErrUnavailable)
	}
	// Processes frozen before the thaw got the SIGKILL already queued;
	// send it again for any that were not yet listed.
	_ = c.signalAll(unix.SIGKILL)
	c.mu.Lock()
	execs := make([]*Process, 0, len(c.execs))
	for _, p := range c.execs {
		if p != nil {
			execs = append(execs, p)
		}
	}
	c.mu.Unlock()
	for _, p := range execs {
		select {
		case <-p.done:
		case <-ctx.Done():
			return fmt.Errorf("container %q: exec %q did not exit in time: %w", c.id, p.ID, errdefs.ErrUnavailable)
		}
	}
	if c.oom != nil {
		c.oom.stop()
	}
	// Under cfgMu: for a container in a shared pid namespace, libcontainer
	// freezes the cgroup to kill what is left, recording it in the config.
	c.cfgMu.Lock()
	err := c.lc.Destroy()
	c.cfgMu.Unlock()
	c.mu.Lock()
	c.initHandle.close()
	c.initHandle = nil
	c.mu.Unlock()
	c.init.closeIO()
	for _, p := range execs {
		p.closeIO()
	}
	// The container is gone for the host whatever lc.Destroy said: give
	// its execs' places in the budget back.
	c.mu.Lock()
	for id := range c.execs {
		c.forgetLocked(id)
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("container %q: destroy: %w", c.id, err)
	}
	c.poststop.Do(func() {
		c.runLoggedHook("poststop", c.hooks.Poststop, c.hookSt, specs.StateStopped)
	})
	return nil
}

// Pause freezes every process of the container.
func (c *Container) Pause() error {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	if err := c.lc.Pause(); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("container %q is not running: %w", c.id, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("container %q: pause: %w", c.id, err)
	}
	return nil
}

// Resume thaws a paused container.
func (c *Container) Resume() error {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	if err := c.lc.Resume(); err != nil {
		if errors.Is(err, libcontainer.ErrNotPaused) {
			return fmt.Errorf("container %q is not paused: %w", c.id, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("container %q: resume: %w", c.id, err)
	}
	return nil
}

// InitPid is the pid of the container's init process.
func (c *Container) InitPid() int { return c.init.pid }

// Started reports whether Start was called.
func (c *Container) Started() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started
}

// CgroupPaths returns the container's cgroup directories by controller
// ("" for the unified hierarchy).
func (c *Container) CgroupPaths() map[string]string {
	out := make(map[string]string, len(c.cgroupPaths))
	for k, v := range c.cgroupPaths {
		out[k] = v
	}
	return out
}
