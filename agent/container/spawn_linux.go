package container

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
)

// startProcess builds the libcontainer process with its stdio and starts
// it (init: up to the exec fifo; exec: fully). Stream sockets in st
// replace the pipes; the caller closes its copies after the start.
func (c *Container) startProcess(id string, sp *specs.Process, isInit bool, st Streams) (*Process, error) {
	if sp.Terminal && st.any() {
		return nil, fmt.Errorf("process %q: stream ports with a terminal are not supported: %w", id, errdefs.ErrNotImplemented)
	}
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
	} else if pipes, err = setupPipes(p, lp, st); err != nil {
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

// Exec starts an additional process in the running container.
// Exec owns st: the process gets the sockets and the agent's copies are
// closed on return.
func (c *Container) Exec(execID string, sp *specs.Process, st Streams) (*Process, error) {
	defer st.Close()
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

	p, err := c.startProcess(execID, sp, false, st)
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
	// A NUL byte cannot reach execve; refused here it is the host's
	// mistake, not a failure to start reported as Internal.
	for _, list := range [][]string{sp.Args, sp.Env, {cwd}} {
		for _, v := range list {
			if strings.IndexByte(v, 0) >= 0 {
				return nil, hostinput.Invalid("process argument, environment variable or cwd %q contains a NUL byte", hostinput.Clip(v))
			}
		}
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
