package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/agent/reaper"
)

// Bounds for the iptables tools.
const (
	// DefaultIPTablesTimeout bounds one run of an iptables tool.
	DefaultIPTablesTimeout = 30 * time.Second
	// MaxIPTablesOutput keeps a reply under ttrpc's 4 MiB message limit.
	MaxIPTablesOutput = 3 << 20
	// maxStderr is how much of a tool's error output is kept for the
	// error message.
	maxStderr = 4 << 10
)

// IPTables runs the image's iptables-save and iptables-restore (or their
// ip6tables twins). The zero value looks them up in PATH.
type IPTables struct {
	// LookPath finds a tool by name; nil means exec.LookPath.
	LookPath func(file string) (string, error)
	// Command builds the command to run; nil means exec.CommandContext.
	// Host tests use it to run the tools inside their namespace.
	Command func(ctx context.Context, path string, args ...string) *exec.Cmd
	// Timeout bounds one run; zero means DefaultIPTablesTimeout.
	Timeout time.Duration
}

// Save returns the output of iptables-save (ip6tables-save with ipv6).
func (t IPTables) Save(ctx context.Context, ipv6 bool) ([]byte, error) {
	tool := "iptables-save"
	if ipv6 {
		tool = "ip6tables-save"
	}
	out, err := t.run(ctx, tool, nil)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Restore feeds data to iptables-restore (ip6tables-restore with ipv6)
// and returns what it printed. A refusal by the tool is reported as
// InvalidArgument with the tool's own message: the rules were bad.
func (t IPTables) Restore(ctx context.Context, ipv6 bool, data []byte) ([]byte, error) {
	tool := "iptables-restore"
	if ipv6 {
		tool = "ip6tables-restore"
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, hostinput.Invalid("%s input contains a NUL byte", tool)
	}
	out, err := t.run(ctx, tool, data)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return nil, classified{err, errdefs.ErrInvalidArgument}
	}
	return out, err
}

// limitedBuffer fails writes past its limit instead of growing. The
// buffer is a named field, not embedded: an embedded bytes.Buffer would
// promote ReadFrom, which io.Copy prefers over Write, bypassing the limit.
type limitedBuffer struct {
	buf      bytes.Buffer
	limit    int
	overflow bool
	truncate bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); len(p) > room {
		b.overflow = true
		if b.truncate {
			if room > 0 {
				b.buf.Write(p[:room])
			}
			return len(p), nil
		}
		return 0, fmt.Errorf("output exceeds %d bytes", b.limit)
	}
	return b.buf.Write(p)
}

func (t IPTables) run(ctx context.Context, tool string, stdin []byte) ([]byte, error) {
	look := t.LookPath
	if look == nil {
		look = exec.LookPath
	}
	path, err := look(tool)
	if err != nil {
		return nil, fmt.Errorf("%s is not in PATH: the guest image has no iptables: %w", tool, errdefs.ErrNotImplemented)
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultIPTablesTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	command := t.Command
	if command == nil {
		command = exec.CommandContext
	}
	cmd := command(ctx, path)
	// A tool that leaves a child holding the pipes must not hang us.
	cmd.WaitDelay = time.Second
	stdout := &limitedBuffer{limit: MaxIPTablesOutput}
	stderr := &limitedBuffer{limit: maxStderr, truncate: true}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	// Through the reaper, so PID 1's orphan reaping cannot take the status.
	err = reaper.RunCmd(cmd)
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("%s did not finish within %s: %w", tool, timeout, context.DeadlineExceeded)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: %w", tool, ctx.Err())
	case stdout.overflow:
		return nil, fmt.Errorf("%s output exceeds %d bytes: %w", tool, MaxIPTablesOutput, errdefs.ErrResourceExhausted)
	case err != nil:
		msg := strings.TrimSpace(stderr.buf.String())
		if msg == "" {
			return nil, fmt.Errorf("run %s: %w", tool, err)
		}
		return nil, fmt.Errorf("run %s: %w: %s", tool, err, msg)
	}
	return stdout.buf.Bytes(), nil
}
