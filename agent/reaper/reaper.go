// Package reaper makes the agent a child subreaper and reaps the exited
// children that nobody else waits for.
//
// The agent starts container processes through libcontainer, which waits
// for them itself (os/exec, pidfd). A plain wait(-1) loop would steal those
// exit statuses, so the reaper only reaps a zombie when
//
//   - its pid is not registered as owned (Own/Disown), and
//
//   - no process start is in flight (Begin/end), because a child that
//     exits before its starter has registered it must not be taken.
//
//   - it has stayed a zombie for a grace period (Options.Grace), so that
//     code that forks without telling the reaper, but waits for its child
//     as os/exec does, still gets its exit status. Such code should use
//     RunCmd all the same; the grace period is a safety net.
//
// Zombies are found without consuming them: waitid(P_ALL, WNOWAIT) tells
// whether any exited child exists at all (the cheap common case), and only
// then /proc is scanned for zombie children of the agent. The loop sleeps on
// SIGCHLD; a one-shot timer runs only while a young unowned zombie waits
// out its grace period, so there is no polling at idle.
//
// Lock order: Reaper.mu is a leaf lock; no other lock is taken under it.
package reaper

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Reaper reaps orphaned children of the agent.
type Reaper struct {
	log      *slog.Logger
	procRoot string
	self     int

	grace time.Duration

	mu       sync.Mutex
	owned    map[int]struct{}
	starting int
	seen     map[zombie]time.Time // unowned zombies waiting out the grace
	timer    *time.Timer

	kick chan struct{}
	sig  chan os.Signal
	stop chan struct{}
	done chan struct{}
}

// Options configure a Reaper.
type Options struct {
	Log *slog.Logger
	// ProcRoot is where procfs is mounted; defaults to /proc.
	ProcRoot string
	// Grace is how long an unowned zombie is left to a parent that waits
	// for it itself; defaults to DefaultGrace.
	Grace time.Duration
}

// DefaultGrace leaves os/exec-style owners ample time to wait.
const DefaultGrace = 250 * time.Millisecond

// zombie identifies one exited child: a pid and its start time, so a
// reused pid is never mistaken for the one seen before.
type zombie struct {
	pid   int
	start string
}

// Start makes the calling process a child subreaper and starts the SIGCHLD
// loop.
func Start(opts Options) (*Reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("set child subreaper: %w", err)
	}
	r := &Reaper{
		log:      opts.Log,
		procRoot: opts.ProcRoot,
		self:     os.Getpid(),
		owned:    map[int]struct{}{},
		seen:     map[zombie]time.Time{},
		grace:    opts.Grace,
		kick:     make(chan struct{}, 1),
		sig:      make(chan os.Signal, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.procRoot == "" {
		r.procRoot = "/proc"
	}
	if r.grace <= 0 {
		r.grace = DefaultGrace
	}
	signal.Notify(r.sig, unix.SIGCHLD)
	active.Store(r)
	go r.loop()
	r.Kick()
	return r, nil
}

// Stop ends the loop. Pending zombies stay for the next owner of the pid 1
// role (there is none in practice: Stop is for tests).
func (r *Reaper) Stop() {
	active.CompareAndSwap(r, nil)
	signal.Stop(r.sig)
	close(r.stop)
	<-r.done
}

// Begin marks the start of a process start: until the returned function is
// called nothing is reaped. The function registers the pids the starter now
// owns (it will wait for them itself) and must be called exactly once.
func (r *Reaper) Begin() (end func(owned ...int)) {
	if r == nil {
		return func(...int) {}
	}
	r.mu.Lock()
	r.starting++
	r.mu.Unlock()
	var once sync.Once
	return func(owned ...int) {
		once.Do(func() {
			r.mu.Lock()
			for _, p := range owned {
				if p > 0 {
					r.owned[p] = struct{}{}
				}
			}
			r.starting--
			r.mu.Unlock()
			r.Kick()
		})
	}
}

// Disown tells the reaper the owner has waited for pid (or gave up on it).
func (r *Reaper) Disown(pid int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	delete(r.owned, pid)
	r.mu.Unlock()
	r.Kick()
}

// Kick asks the loop for a scan, e.g. after a start window closed.
func (r *Reaper) Kick() {
	if r == nil {
		return
	}
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Reaper) loop() {
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			return
		case <-r.sig:
		case <-r.kick:
		}
		r.reap()
	}
}

// reap reaps every unowned zombie child while no start is in flight.
func (r *Reaper) reap() {
	for {
		// Cheap check first: is there any exited child at all?
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err != nil || SiginfoPid(&info) == 0 {
			return // ECHILD or nothing exited
		}
		r.mu.Lock()
		if r.starting > 0 {
			r.mu.Unlock()
			return // the end of the start window kicks us again
		}
		zombies, err := r.zombies()
		if err != nil {
			r.mu.Unlock()
			r.log.Warn("scan for zombie children", "error", err)
			return
		}
		now := time.Now()
		var next time.Duration
		live := make(map[zombie]bool, len(zombies))
		reaped := 0
		for _, z := range zombies {
			if _, ok := r.owned[z.pid]; ok {
				continue
			}
			live[z] = true
			first, ok := r.seen[z]
			if !ok {
				first = now
				r.seen[z] = now
			}
			if age := now.Sub(first); age < r.grace {
				if wait := r.grace - age; next == 0 || wait < next {
					next = wait
				}
				continue
			}
			var ws unix.WaitStatus
			got, err := unix.Wait4(z.pid, &ws, unix.WNOHANG, nil)
			if err == nil && got == z.pid {
				reaped++
				delete(live, z)
			}
		}
		for z := range r.seen {
			if !live[z] {
				delete(r.seen, z)
			}
		}
		if next > 0 {
			if r.timer != nil {
				r.timer.Stop()
			}
			r.timer = time.AfterFunc(next, r.Kick)
		}
		r.mu.Unlock()
		if reaped == 0 {
			return // the rest belongs to owners or waits out its grace
		}
	}
}

// zombies lists the zombie children of this process from procfs.
func (r *Reaper) zombies() ([]zombie, error) {
	ents, err := os.ReadDir(r.procRoot)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", r.procRoot, err)
	}
	var out []zombie
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.procRoot, e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		state, ppid, err := ParseStat(b)
		if err != nil {
			continue
		}
		if ppid == r.self && state == 'Z' {
			out = append(out, zombie{pid: pid, start: startTime(b)})
		}
	}
	return out, nil
}

// startTime returns field 22 of a stat line (start time in clock ticks).
func startTime(b []byte) string {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return ""
	}
	return string(f[19])
}

// ParseStat extracts the state and parent pid from a /proc/PID/stat line.
// The command name may contain spaces and parentheses, so parsing starts
// after the last ')'.
func ParseStat(b []byte) (state byte, ppid int, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, errors.New("malformed stat: no command terminator")
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, errors.New("malformed stat: missing state or ppid")
	}
	ppid, err = strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, 0, fmt.Errorf("malformed stat ppid %q: %w", f[1], err)
	}
	return f[0][0], ppid, nil
}

// Run starts cmd inside a start window, registers it as owned, waits for
// it and hands the pid back: the way for any other agent code that forks
// (mkfs, iptables, ...) to keep its exit status from being reaped.
func (r *Reaper) Run(cmd *exec.Cmd) error {
	end := r.Begin()
	if err := cmd.Start(); err != nil {
		end()
		return err
	}
	pid := cmd.Process.Pid
	end(pid)
	defer r.Disown(pid)
	return cmd.Wait()
}

// active is the running reaper, for RunCmd.
var active atomic.Pointer[Reaper]

// RunCmd runs cmd to completion like cmd.Run, through the running reaper
// if there is one, so its exit status cannot be reaped from under it. Any
// agent code that forks (modprobe, iptables-restore, a debug shell) should
// use it; set cmd.Stdout/Stderr for output.
func RunCmd(cmd *exec.Cmd) error {
	if r := active.Load(); r != nil {
		return r.Run(cmd)
	}
	return cmd.Run()
}

// StartCmd starts cmd like cmd.Start, registered with the running reaper
// if there is one; the returned wait replaces cmd.Wait. It is for callers
// that must act between start and wait (close a pty's child end, ...).
func StartCmd(cmd *exec.Cmd) (wait func() error, err error) {
	r := active.Load()
	if r == nil {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return cmd.Wait, nil
	}
	end := r.Begin()
	if err := cmd.Start(); err != nil {
		end()
		return nil, err
	}
	pid := cmd.Process.Pid
	end(pid)
	return func() error {
		defer r.Disown(pid)
		return cmd.Wait()
	}, nil
}
