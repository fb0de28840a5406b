package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
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
}

// ID is the container id.
func (c *Container) ID() string { return c.id }

// Create creates the container and its init process, which waits for
// Start. Stdio pipes (or the terminal) exist from now on.
func Create(opts Options) (_ *Container, retErr error) {
	if opts.Spec == nil || opts.Spec.Process == nil {
		return nil, fmt.Errorf("container %q: spec has no process: %w", opts.ID, errdefs.ErrInvalidArgument)
	}
	if opts.Spec.Linux == nil {
		opts.Spec.Linux = &specs.Linux{}
	}
	opts.Spec.Linux.CgroupsPath = opts.CgroupsPath
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName: opts.ID,
		Spec:       opts.Spec,
		// Keyrings are not namespaced; a session keyring per container
		// keeps them apart as runc does by default.
		NoNewKeyring: false,
	})
	if err != nil {
		return nil, fmt.Errorf("container %q: convert spec: %v: %w", opts.ID, err, errdefs.ErrInvalidArgument)
	}
	// Validate here so a bad spec is reported as the caller's mistake, not
	// an internal failure of Create.
	if err := validate.Validate(cfg); err != nil {
		return nil, fmt.Errorf("container %q: invalid spec: %v: %w", opts.ID, err, errdefs.ErrInvalidArgument)
	}
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
	c := &Container{id: opts.ID, log: log, reaper: opts.Reaper, lc: lc, execs: map[string]*Process{}, holdInit: opts.HoldInit, policy: opts.Execs.withDefaults()}
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
	p, err := c.startProcess(opts.ID, opts.Spec.Process, true)
	if err != nil {
		return nil, err
	}
	c.init = p
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

// startProcess builds the libcontainer process with its stdio and starts
// it (init: up to the exec fifo; exec: fully).
func (c *Container) startProcess(id string, sp *specs.Process, isInit bool) (*Process, error) {
	lp, err := newLibcontainerProcess(sp, isInit)
	if err != nil {
		return nil, fmt.Errorf("process %q: %w", id, err)
	}
	p := &Process{ID: id, Init: isInit, tty: sp.Terminal, lp: lp, done: make(chan struct{}), policy: &c.policy}
	var pipes *stdioPair
	var console *consoleSocket
	if sp.Terminal {
		if console, err = newConsoleSocket(); err != nil {
			return nil, err
		}
		defer console.close()
		lp.ConsoleSocket = console.child
	} else if pipes, err = setupPipes(p, lp); err != nil {
		return nil, err
	}
	var end func(...int)
	if c.reaper != nil {
		end = c.reaper.Begin()
	}
	if isInit {
		err = c.lc.Start(lp)
	} else {
		err = c.lc.Run(lp)
	}
	if pipes != nil {
		pipes.closeChild()
	}
	if err != nil {
		if end != nil {
			end()
		}
		p.closeIO()
		return nil, fmt.Errorf("process %q: start: %w", id, err)
	}
	p.pid, _ = lp.Pid()
	if end != nil {
		end(p.pid)
	}
	if isInit && c.holdInit {
		// Now, before waitLoop can reap it: the pid is still ours.
		if c.initHandle, err = openPidHandle(p.pid); err != nil {
			_ = lp.Signal(unix.SIGKILL)
			_, _ = lp.Wait()
			if c.reaper != nil {
				c.reaper.Disown(p.pid)
			}
			p.closeIO()
			return nil, fmt.Errorf("process %q: %w", id, err)
		}
	}
	if console != nil {
		master, err := console.receiveMaster()
		if err != nil {
			_ = lp.Signal(unix.SIGKILL)
			_, _ = lp.Wait()
			if c.reaper != nil {
				c.reaper.Disown(p.pid)
			}
			return nil, fmt.Errorf("process %q: %w", id, err)
		}
		p.stdin, p.stdout = master, master
	}
	disown := func(int) {}
	if c.reaper != nil {
		disown = c.reaper.Disown
	}
	go func() {
		p.waitLoop(disown)
		// The host may have read the streams to EOF before the exit was
		// seen: give back what the process no longer needs.
		c.settle(p)
	}()
	return p, nil
}

// Start runs the init process's program (the OCI "start").
func (c *Container) Start() error {
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

// Exec starts an additional process in the running container.
func (c *Container) Exec(execID string, sp *specs.Process) (*Process, error) {
	if sp == nil {
		return nil, fmt.Errorf("exec %q: process is nil: %w", execID, errdefs.ErrInvalidArgument)
	}
	c.mu.Lock()
	switch {
	case c.removed:
		c.mu.Unlock()
		return nil, fmt.Errorf("container %q is being removed: %w", c.id, errdefs.ErrNotFound)
	case !c.started:
		c.mu.Unlock()
		return nil, fmt.Errorf("container %q is not started: exec needs a running container: %w", c.id, errdefs.ErrFailedPrecondition)
	case c.init.Exited():
		c.mu.Unlock()
		return nil, fmt.Errorf("container %q has exited: %w", c.id, errdefs.ErrFailedPrecondition)
	case execID == c.id:
		c.mu.Unlock()
		return nil, fmt.Errorf("exec %q: the container's own id is its init process: %w", execID, errdefs.ErrAlreadyExists)
	}
	if _, dup := c.execs[execID]; dup {
		c.mu.Unlock()
		return nil, fmt.Errorf("exec %q in container %q: %w", execID, c.id, errdefs.ErrAlreadyExists)
	}
	if err := c.policy.Budget.take(execID, c.id); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	// Reserve the id; the start forks and must run without the lock.
	c.execs[execID] = nil
	c.mu.Unlock()

	p, err := c.startProcess(execID, sp, false)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.forgetLocked(execID)
		return nil, err
	}
	if c.removed {
		// Removal raced with the start; the kill of the cgroup ends it.
		_ = p.lp.Signal(unix.SIGKILL)
		if _, ok := c.execs[execID]; !ok {
			// Destroy is done and gave the reservation back.
			p.closeIO()
			return nil, fmt.Errorf("container %q is being removed: %w", c.id, errdefs.ErrNotFound)
		}
	}
	c.execs[execID] = p
	return p, nil
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

// SignalAll signals every process of the container (all pids in its
// cgroup); a container with nothing left running succeeds, as
// Process.Signal does.
func (c *Container) SignalAll(sig unix.Signal) error {
	if c.init.Exited() && !c.hasProcesses() {
		return nil
	}
	return c.signalAll(sig)
}

func (c *Container) hasProcesses() bool {
	pids, err := c.lc.Processes()
	return err == nil && len(pids) > 0
}

func (c *Container) signalAll(sig unix.Signal) error {
	pids, err := c.lc.Processes()
	if err != nil {
		return fmt.Errorf("container %q: list processes: %w", c.id, err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("container %q: signal pid %d: %w", c.id, pid, err)
		}
	}
	return nil
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

// Update changes the container's memory, CPU and pids resources; fields
// not given keep their value. A refused update leaves the previous limits
// in force.
func (c *Container) Update(r *specs.LinuxResources) error {
	if r == nil {
		return fmt.Errorf("container %q: no resources given: %w", c.id, errdefs.ErrInvalidArgument)
	}
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	cfg := c.configCopy()
	res := cfg.Cgroups.Resources
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			res.Memory = *m.Limit
		}
		if m.Reservation != nil {
			res.MemoryReservation = *m.Reservation
		}
		if m.Swap != nil {
			res.MemorySwap = *m.Swap
		}
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Shares != nil {
			res.CpuShares = *cpu.Shares
		}
		if cpu.Quota != nil {
			res.CpuQuota = *cpu.Quota
		}
		if cpu.Period != nil {
			res.CpuPeriod = *cpu.Period
		}
		if cpu.Cpus != "" {
			res.CpusetCpus = cpu.Cpus
		}
		if cpu.Mems != "" {
			res.CpusetMems = cpu.Mems
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		limit := *r.Pids.Limit
		res.PidsLimit = &limit
	}
	if err := c.set(cfg); err != nil {
		return fmt.Errorf("container %q: update resources: %w", c.id, err)
	}
	return nil
}

// configCopy returns libcontainer's config with a cgroup configuration of
// its own: a change reaches libcontainer only through a successful Set,
// and a refused Set restores the limits of the untouched config (writing
// through the shared one would make that restore re-apply the refused
// values). Called with cfgMu held.
func (c *Container) configCopy() configs.Config {
	cfg := c.lc.Config()
	var cg cgroups.Cgroup
	if cfg.Cgroups != nil {
		cg = *cfg.Cgroups
	}
	var res cgroups.Resources
	if cg.Resources != nil {
		res = *cg.Resources
	}
	cg.Resources = &res
	cfg.Cgroups = &cg
	return cfg
}

// set applies cfg through libcontainer, classifying its refusals. Called
// with cfgMu held.
func (c *Container) set(cfg configs.Config) error {
	err := c.lc.Set(cfg)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, libcontainer.ErrNotRunning):
		return fmt.Errorf("container %q is not running: %w", c.id, errdefs.ErrFailedPrecondition)
	default:
		// The kernel refused a value (EINVAL, ERANGE, EBUSY for a limit
		// below current usage, ...): the request's mistake.
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
}

// FollowOnlineCPUs sets the container's cpuset to cpus (the guest's online
// CPUs) unless the container asked for specific CPUs: hot-added vCPUs are
// then usable by containers that were created before they arrived.
func (c *Container) FollowOnlineCPUs(cpus string) error {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	cfg := c.configCopy()
	res := cfg.Cgroups.Resources
	pinned := res.CpusetCpus != "" && res.CpusetCpus != c.followedCpus
	if pinned || res.CpusetCpus == cpus {
		return nil
	}
	res.CpusetCpus = cpus
	if err := c.set(cfg); err != nil {
		if errors.Is(err, errdefs.ErrFailedPrecondition) {
			return nil // not running: no process to give the CPUs to
		}
		return fmt.Errorf("container %q: set cpuset to %s: %w", c.id, cpus, err)
	}
	c.followedCpus = cpus
	return nil
}

// Stats returns the container's cgroup statistics.
func (c *Container) Stats() (*libcontainer.Stats, error) {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	st, err := c.lc.Stats()
	if err != nil {
		return nil, fmt.Errorf("container %q: stats: %w", c.id, err)
	}
	return st, nil
}

// ProcessInfo is one line of ListProcesses.
type ProcessInfo struct {
	Pid  int
	PPid int
	Cmd  string
}

// ListProcesses lists the processes of the container's cgroup, sorted by
// pid, with their command lines read from procRoot.
func (c *Container) ListProcesses(procRoot string) ([]ProcessInfo, error) {
	pids, err := c.lc.Processes()
	if err != nil {
		return nil, fmt.Errorf("container %q: list processes: %w", c.id, err)
	}
	sort.Ints(pids)
	out := make([]ProcessInfo, 0, len(pids))
	for _, pid := range pids {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		cmd, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			continue // exited meanwhile
		}
		pi := ProcessInfo{Pid: pid, Cmd: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))}
		if st, err := os.ReadFile(filepath.Join(dir, "stat")); err == nil {
			if i := strings.LastIndexByte(string(st), ')'); i > 0 {
				if f := strings.Fields(string(st[i+1:])); len(f) > 1 {
					pi.PPid, _ = strconv.Atoi(f[1])
				}
			}
		}
		out = append(out, pi)
	}
	return out, nil
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

// newLibcontainerProcess translates a runtime-spec process.
func newLibcontainerProcess(sp *specs.Process, isInit bool) (*libcontainer.Process, error) {
	if len(sp.Args) == 0 {
		return nil, fmt.Errorf("process has no args: %w", errdefs.ErrInvalidArgument)
	}
	cwd := sp.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if !filepath.IsAbs(cwd) {
		return nil, fmt.Errorf("cwd %q is not absolute: %w", sp.Cwd, errdefs.ErrInvalidArgument)
	}
	lp := &libcontainer.Process{
		Args:            sp.Args,
		Env:             sp.Env,
		Cwd:             cwd,
		UID:             int(sp.User.UID),
		GID:             int(sp.User.GID),
		Init:            isInit,
		Label:           sp.SelinuxLabel,
		AppArmorProfile: sp.ApparmorProfile,
	}
	if !isInit {
		nnp := sp.NoNewPrivileges
		lp.NoNewPrivileges = &nnp
	}
	for _, g := range sp.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	if sp.ConsoleSize != nil {
		lp.ConsoleWidth, lp.ConsoleHeight = uint16(sp.ConsoleSize.Width), uint16(sp.ConsoleSize.Height)
	}
	if c := sp.Capabilities; c != nil && !isInit {
		lp.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable,
			Permitted: c.Permitted, Ambient: c.Ambient,
		}
	}
	for _, rl := range sp.Rlimits {
		t, ok := rlimits[rl.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q: %w", rl.Type, errdefs.ErrInvalidArgument)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: rl.Hard, Soft: rl.Soft})
	}
	return lp, nil
}

var rlimits = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}
