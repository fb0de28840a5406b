// Command agentctl drives a kata agent from the host: health checks,
// containers, storage, hot-plug and networking, one subcommand each.
//
// Usage: agentctl [--addr ADDR] [--timeout D] [--json] COMMAND [ARGS...]
//
// Results print in human units (sizes as 1.5 MiB, durations as 230 ms);
// --json, before or after the command, prints one JSON document instead.
//
// Commands live in cmd_<concern>.go files and register themselves in the
// commands table; main only dials and dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
)

// command is one agentctl subcommand.
type command struct {
	name    string
	args    string // usage after the name, e.g. "ID [SIGNAL]"
	summary string
	// streaming commands (run, exec, ...) are bounded by --timeout only
	// while dialing; others for the whole call.
	streaming bool
	// agentOptional commands run even when the agent cannot be reached:
	// they get a nil client and the reason in dialErr.
	agentOptional bool
	// processOutput commands print a container process's output (run,
	// exec, ps): with --json it is collected into one document.
	processOutput bool
	run           func(ctx context.Context, c *agentclient.Client, args []string) error
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("agentctl: duplicate command " + c.name)
	}
	commands[c.name] = c
}

// exitError asks main to exit with a specific status (a container's).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

const defaultAddr = "unix:///run/kata-agent.sock"

func main() {
	os.Exit(agentctl(os.Args[1:], os.Stdout, os.Stderr))
}

func agentctl(argv []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agentctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("AGENTCTL_ADDR", defaultAddr), "agent address: unix:///path, vsock://CID:PORT or hvsock:///path:PORT")
	timeout := fs.Duration("timeout", 10*time.Second, "time allowed to reach the agent (and, for non-streaming commands, to answer)")
	asJSON := fs.Bool("json", false, "print results as one JSON document (raw bytes and nanoseconds) instead of human units")
	fs.Usage = func() { usage(fs, stderr) }
	if err := fs.Parse(argv); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		usage(fs, stderr)
		return 2
	}
	cmd, ok := commands[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "agentctl: unknown command %q\n", fs.Arg(0))
		usage(fs, stderr)
		return 2
	}

	args, argJSON := takeJSONFlag(fs.Args()[1:])
	jsonOut = *asJSON || argJSON

	ctx, stop := signalContext()
	defer stop()
	dialCtx, cancelDial := context.WithTimeout(ctx, *timeout)
	defer cancelDial()
	agentAddr = *addr
	c, err := agentclient.Dial(dialCtx, *addr)
	dialErr = nil
	if err != nil {
		err = fmt.Errorf("cannot reach the agent at %s within %s: %w", *addr, *timeout, err)
		if !cmd.agentOptional {
			fmt.Fprintf(stderr, "agentctl: %v\n", err)
			return 1
		}
		c, dialErr = nil, err
	} else {
		defer c.Close()
	}

	callCtx := ctx
	if !cmd.streaming {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	out = stdout
	run := cmd.run
	if jsonOut && cmd.processOutput {
		run = captureStreams(run)
	}
	if err := run(callCtx, c, args); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintf(stderr, "agentctl %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

// dialErr says why the agent could not be reached, for agentOptional
// commands (their client is nil then).
var dialErr error

// streamResult is what a streaming command (run, exec, ps) prints with
// --json: the process's output and status in one document.
type streamResult struct {
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}

// captureStreams collects a streaming command's stdout and stderr and
// prints them with the exit status as JSON; the exit status stays the
// command's.
func captureStreams(run func(context.Context, *agentclient.Client, []string) error) func(context.Context, *agentclient.Client, []string) error {
	return func(ctx context.Context, c *agentclient.Client, args []string) error {
		// Output copiers can outlive run (a background process holding
		// the output open past the drain bound): the buffers are locked.
		var o, e lockedBuffer
		realOut, realErr := out, errOut
		out, errOut = &o, &e
		err := run(ctx, c, args)
		out, errOut = realOut, realErr
		res := streamResult{Stdout: o.String(), Stderr: e.String()}
		var ee exitError
		switch {
		case errors.As(err, &ee):
			res.ExitCode = ee.code
		case err != nil:
			// The command failed before a status: say so on stderr
			// (main does), with what the process wrote kept there.
			fmt.Fprint(errOut, e.String())
			return err
		}
		if werr := writeJSON(out, res); werr != nil {
			return werr
		}
		return err
	}
}

// out is where commands print results (swapped in tests).
var out io.Writer = os.Stdout

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "usage: agentctl [flags] COMMAND [ARGS...]\n\nflags:\n")
	fs.PrintDefaults()
	fmt.Fprintf(w, "\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %-40s %s\n", c.name+" "+c.args, c.summary)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// lockedBuffer is a buffer safe for concurrent writers and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
