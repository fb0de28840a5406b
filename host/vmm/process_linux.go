package vmm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// process is a helper program run in its own process group, so that
// teardown reaches anything it forks, and with a parent-death signal, so
// that it dies with us even when we are killed without a chance to clean up.
type process struct {
	name  string
	cmd   *exec.Cmd
	log   *os.File
	done  chan struct{}
	state *os.ProcessState
	err   error
}

func startProcess(name, bin string, args []string, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = nil
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.state = cmd.ProcessState
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			p.err = err
		}
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signalGroup signals the whole process group. A group that is already
// gone is not an error.
func (p *process) signalGroup(sig syscall.Signal) error {
	err := syscall.Kill(-p.pid(), sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s group %d: %w", p.name, p.pid(), err)
	}
	return nil
}

// stop gives the process selfExit to leave on its own, then sends sig
// (0 sends nothing) and waits up to grace, then kills its whole group.
// The group is killed even when the leader already exited, for any
// stragglers it forked.
func (p *process) stop(selfExit time.Duration, sig syscall.Signal, grace time.Duration) error {
	var errs []error
	wait := func(d time.Duration) {
		if d <= 0 {
			return
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
		}
	}
	wait(selfExit)
	if sig != 0 && !p.exited() {
		errs = append(errs, p.signalGroup(sig))
		wait(grace)
	}
	errs = append(errs, p.signalGroup(syscall.SIGKILL))
	// SIGKILL cannot be caught; the wait goroutine reaps the process soon.
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		errs = append(errs, fmt.Errorf("%s (pid %d) survived SIGKILL", p.name, p.pid()))
	}
	return errors.Join(errs...)
}

// exitCode is the exit status, or -1 with an error when a signal ended it.
func (p *process) exitCode() (int, error) {
	if p.err != nil {
		return -1, fmt.Errorf("wait for %s: %w", p.name, p.err)
	}
	if p.state == nil {
		return -1, fmt.Errorf("%s: no exit status", p.name)
	}
	ws, ok := p.state.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return -1, fmt.Errorf("%s: %w %v", p.name, ErrKilled, ws.Signal())
	}
	return p.state.ExitCode(), nil
}
