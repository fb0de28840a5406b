package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/reaper"
)

// outputLimit bounds what is kept of a hook's output (for the error and
// the log): a hook writing without end must not grow the agent.
const outputLimit = 4 << 10

// waitDelay is how long a hook's output pipes are waited for after it
// was killed or exited: a descendant that left its process group may hold
// them open.
const waitDelay = time.Second

// Run runs every hook of stage with the state st, in order. A prestart
// hook's failure stops the run and is returned; later stages run every
// hook and return all failures joined (the caller logs them).
func (s Set) Run(ctx context.Context, stage Stage, st *specs.State) error {
	var errs []error
	for _, h := range s.hooks[stage] {
		if err := Run(ctx, stage, h, st); err != nil {
			if stage == Prestart {
				return err
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run runs one hook with the state st on its stdin and waits for it, at
// most h.Timeout (DefaultTimeout if zero), after which its process group
// is killed. The error names the stage and the hook's path and carries
// the end of its output.
func Run(ctx context.Context, stage Stage, h Hook, st *specs.State) error {
	in, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("%s hook %s: state: %w", stage, h.Path, err)
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &tailBuffer{max: outputLimit}
	cmd := exec.CommandContext(ctx, h.Path)
	cmd.Args = h.Args
	if len(cmd.Args) == 0 {
		cmd.Args = []string{h.Path}
	}
	cmd.Env = []string{} // not the agent's environment
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: a shell script's children go with it.
		return unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	}
	cmd.WaitDelay = waitDelay
	wait, err := reaper.StartCmd(cmd)
	if err != nil {
		return fmt.Errorf("%s hook %s: start: %v: %w", stage, h.Path, err, errdefs.ErrFailedPrecondition)
	}
	err = wait()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s hook %s: still running after %s, killed; output: %q: %w", stage, h.Path, timeout, out.String(), context.DeadlineExceeded)
	}
	if err != nil {
		return fmt.Errorf("%s hook %s: %v; output: %q: %w", stage, h.Path, err, out.String(), errdefs.ErrFailedPrecondition)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= t.max {
		p = p[len(p)-t.max:]
		t.b = append(t.b[:0], p...)
		return n, nil
	}
	if over := len(t.b) + len(p) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	t.b = append(t.b, p...)
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
