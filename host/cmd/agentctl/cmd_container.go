package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/host/ocispec"
	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/ocipb"
)

// agentAddr is --addr, for the stream-port connections.
var agentAddr string

// in and errOut are the terminal ends of streamed container stdio
// (swapped in tests).
var (
	in     io.Reader = os.Stdin
	errOut io.Writer = os.Stderr
)

func init() {
	register(&command{name: "run", streaming: true, processOutput: true, run: runRun,
		args:    "--rootfs DIR [--id ID] [--tty] [--env K=V]... [--cwd D] [--memory BYTES] [--keep] [--stream-port P] -- CMD...",
		summary: "create and start a container, stream its stdio, exit with its status"})
	register(&command{name: "exec", streaming: true, processOutput: true, run: runExec,
		args: "ID [--tty] [--stream-port P] -- CMD...", summary: "run a process in a running container"})
	register(&command{name: "kill", run: runKill, args: "ID [SIGNAL]", summary: "signal every process of a container (default TERM)"})
	register(&command{name: "ps", processOutput: true, run: runPs, args: "ID", summary: "list a container's processes (runs ps inside it)"})
	register(&command{name: "stats", run: runStats, args: "ID", summary: "print a container's cgroup statistics"})
	register(&command{name: "pause", run: runPause, args: "ID", summary: "freeze a container"})
	register(&command{name: "resume", run: runResume, args: "ID", summary: "thaw a paused container"})
	register(&command{name: "rm", run: runRm, args: "ID", summary: "kill and remove a container"})
	register(&command{name: "create-sandbox", run: runCreateSandbox,
		args: "[--id ID] [--hostname H] [--dns LINE]... [--sandbox-pidns]", summary: "set up the pod (hostname, DNS, shared namespaces)"})
	register(&command{name: "destroy-sandbox", run: runDestroySandbox, summary: "remove every container and tear the pod down"})
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// containerFlags makes a FlagSet whose errors go to the terminal.
func containerFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	return fs
}

func randomID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func runRun(ctx context.Context, c *agentclient.Client, args []string) error {
	fs := containerFlags("run")
	rootfs := fs.String("rootfs", "", "container root filesystem (absolute path on the agent's side)")
	id := fs.String("id", "", "container id (default: random)")
	tty := fs.Bool("tty", false, "allocate a terminal")
	cwd := fs.String("cwd", "/", "working directory")
	memory := fs.Int64("memory", 0, "memory limit in bytes (0: none)")
	keep := fs.Bool("keep", false, "do not remove the container after it exits")
	streamPort := fs.Uint("stream-port", 0, "carry stdio on connections to this agent.passfd_listener_port (0: ReadStdout/WriteStdin)")
	var env multiFlag
	fs.Var(&env, "env", "K=V environment variable (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmd := fs.Args()
	if *rootfs == "" || len(cmd) == 0 {
		return errors.New("usage: run --rootfs DIR [flags] -- CMD [ARG]")
	}
	if *id == "" {
		*id = randomID("run-")
	}
	spec := ocispec.Default(*rootfs, cmd, *tty)
	spec.Process.Cwd = *cwd
	spec.Process.Env = append(spec.Process.Env, env...)
	if *memory > 0 {
		spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: memory}
	}
	ports, err := dialStreams(ctx, *streamPort, *tty)
	if err != nil {
		return err
	}
	if _, err := c.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: *id, ExecId: *id, OCI: ocipb.FromSpec(spec),
		StdinPort: ports.StdinPort, StdoutPort: ports.StdoutPort, StderrPort: ports.StderrPort,
	}); err != nil {
		_ = ports.Close()
		return fmt.Errorf("create container %s: %w", *id, err)
	}
	remove := func() {
		if !*keep {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if _, err := c.Agent.RemoveContainer(rctx, &pb.RemoveContainerRequest{ContainerId: *id}); err != nil {
				fmt.Fprintf(errOut, "agentctl: remove %s: %v\n", *id, err)
			}
		}
	}
	st := startStreams(ctx, c, *id, "", *tty)
	st.ports = ports
	if _, err := c.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: *id}); err != nil {
		remove()
		return fmt.Errorf("start container %s: %w", *id, err)
	}
	st.afterStart()
	code, err := st.wait(ctx, c, *id, "")
	remove()
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code: int(code)}
	}
	return nil
}

func runExec(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: exec ID [--tty] -- CMD [ARG]")
	}
	id := args[0]
	fs := containerFlags("exec")
	tty := fs.Bool("tty", false, "allocate a terminal")
	cwd := fs.String("cwd", "/", "working directory")
	streamPort := fs.Uint("stream-port", 0, "carry stdio on connections to this agent.passfd_listener_port (0: ReadStdout/WriteStdin)")
	var env multiFlag
	fs.Var(&env, "env", "K=V environment variable (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: exec ID [--tty] -- CMD [ARG]")
	}
	execID := randomID("exec-")
	proc := &specs.Process{Terminal: *tty, Args: fs.Args(), Env: append([]string{ocispec.DefaultPath, "TERM=xterm"}, env...), Cwd: *cwd}
	ports, err := dialStreams(ctx, *streamPort, *tty)
	if err != nil {
		return err
	}
	st := startStreams(ctx, c, id, execID, *tty)
	st.ports = ports
	if _, err := c.Agent.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: id, ExecId: execID, Process: ocipb.FromProcess(proc),
		StdinPort: ports.StdinPort, StdoutPort: ports.StdoutPort, StderrPort: ports.StderrPort}); err != nil {
		_ = ports.Close()
		st.cancel()
		return fmt.Errorf("exec in %s: %w", id, err)
	}
	st.afterStart()
	code, err := st.wait(ctx, c, id, execID)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code: int(code)}
	}
	return nil
}

// streams copies a process's stdio between the agent and this terminal.
type streams struct {
	c           *agentclient.Client
	cid, execID string
	tty         bool
	ctx         context.Context
	cancel      context.CancelFunc
	out         sync.WaitGroup
	restoreTerm func()
	ports       *agentclient.Streams // stream ports; every field zero without
}

// dialStreams connects the stream ports when --stream-port is given.
func dialStreams(ctx context.Context, port uint, tty bool) (*agentclient.Streams, error) {
	if port == 0 {
		return &agentclient.Streams{}, nil
	}
	if tty || port > 0xFFFFFFFF {
		return nil, errors.New("--stream-port: needs a port number and no --tty")
	}
	s, err := agentclient.DialStreams(ctx, agentAddr, uint32(port), true, true, true)
	if err != nil {
		return nil, fmt.Errorf("stream ports: %w", err)
	}
	return s, nil
}

// afterStartPorts copies stdio over the stream-port connections.
func (s *streams) afterStartPorts() {
	for _, p := range []struct {
		c net.Conn
		w io.Writer
	}{{s.ports.Stdout, out}, {s.ports.Stderr, errOut}} {
		s.out.Add(1)
		go func() {
			defer s.out.Done()
			_, _ = io.Copy(p.w, p.c)
		}()
	}
	go func() {
		_, _ = io.Copy(s.ports.Stdin, in)
		_ = s.ports.CloseStdin()
	}()
}

func startStreams(ctx context.Context, c *agentclient.Client, cid, execID string, tty bool) *streams {
	sctx, cancel := context.WithCancel(ctx)
	s := &streams{c: c, cid: cid, execID: execID, tty: tty, ctx: sctx, cancel: cancel, restoreTerm: func() {}}
	return s
}

// afterStart begins copying once the process exists.
func (s *streams) afterStart() {
	if s.ports != nil && s.ports.Stdout != nil {
		s.afterStartPorts()
		return
	}
	read := func(stderr bool, w io.Writer) {
		defer s.out.Done()
		for {
			req := &pb.ReadStreamRequest{ContainerId: s.cid, ExecId: s.execID, Len: 32 << 10}
			var r *pb.ReadStreamResponse
			var err error
			if stderr {
				r, err = s.c.Agent.ReadStderr(s.ctx, req)
			} else {
				r, err = s.c.Agent.ReadStdout(s.ctx, req)
			}
			if err != nil || len(r.Data) == 0 {
				return
			}
			if _, err := w.Write(r.Data); err != nil {
				return
			}
		}
	}
	s.out.Add(1)
	go read(false, out)
	if !s.tty {
		s.out.Add(1)
		go read(true, errOut)
	}
	if s.tty {
		s.restoreTerm = s.setupTerminal()
	}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if _, werr := s.c.Agent.WriteStdin(s.ctx, &pb.WriteStreamRequest{ContainerId: s.cid, ExecId: s.execID, Data: buf[:n]}); werr != nil {
					return
				}
			}
			if err != nil {
				_, _ = s.c.Agent.CloseStdin(s.ctx, &pb.CloseStdinRequest{ContainerId: s.cid, ExecId: s.execID})
				return
			}
		}
	}()
}

// setupTerminal puts a local terminal in raw mode and forwards its size.
func (s *streams) setupTerminal() func() {
	f, ok := in.(*os.File)
	if !ok {
		return func() {}
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {}
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	_ = unix.IoctlSetTermios(fd, unix.TCSETS, &raw)
	resize := func() {
		if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
			_, _ = s.c.Agent.TtyWinResize(s.ctx, &pb.TtyWinResizeRequest{ContainerId: s.cid, ExecId: s.execID, Row: uint32(ws.Row), Column: uint32(ws.Col)})
		}
	}
	resize()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	go func() {
		for {
			select {
			case <-winch:
				resize()
			case <-s.ctx.Done():
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
	}
}

// wait waits for the process, then for its output to drain (bounded).
func (s *streams) wait(ctx context.Context, c *agentclient.Client, cid, execID string) (int32, error) {
	defer s.cancel()
	defer s.restoreTerm()
	if s.ports != nil {
		defer s.ports.Close()
	}
	r, err := c.Agent.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: execID})
	if err != nil {
		return 0, fmt.Errorf("wait for %s: %w", cid, err)
	}
	drained := make(chan struct{})
	go func() { s.out.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		// A background process still holds the output open.
	}
	return r.Status, nil
}

func oneID(args []string, usage string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("usage: %s", usage)
	}
	return args[0], nil
}

// parseSignal accepts a number, NAME or SIGNAME.
func parseSignal(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return uint32(sig), nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

func runKill(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("usage: kill ID [SIGNAL]")
	}
	sig := uint32(unix.SIGTERM)
	if len(args) == 2 {
		var err error
		if sig, err = parseSignal(args[1]); err != nil {
			return err
		}
	}
	if _, err := c.Agent.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: args[0], Signal: sig}); err != nil {
		return err
	}
	return emit(map[string]any{"container_id": args[0], "signal": sig}, nil)
}

func runPs(ctx context.Context, c *agentclient.Client, args []string) error {
	id, err := oneID(args, "ps ID")
	if err != nil {
		return err
	}
	// The protocol has no process listing call; ps runs in the container.
	return runExec(ctx, c, []string{id, "--", "ps"})
}

func runStats(ctx context.Context, c *agentclient.Client, args []string) error {
	id, err := oneID(args, "stats ID")
	if err != nil {
		return err
	}
	r, err := c.Agent.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: id})
	if err != nil {
		return err
	}
	return emit(r, func(w io.Writer) error {
		cg := r.GetCgroupStats()
		mem := cg.GetMemoryStats().GetUsage()
		fmt.Fprintf(w, "memory.usage\t%s\n", humanBytes(mem.GetUsage()))
		fmt.Fprintf(w, "memory.max_usage\t%s\n", humanBytes(mem.GetMaxUsage()))
		fmt.Fprintf(w, "memory.limit\t%s\n", humanLimit(mem.GetLimit()))
		fmt.Fprintf(w, "cpu.total\t%s\n", humanDuration(time.Duration(cg.GetCpuStats().GetCpuUsage().GetTotalUsage())))
		_, err := fmt.Fprintf(w, "pids.current\t%d\n", cg.GetPidsStats().GetCurrent())
		return err
	})
}

// humanLimit is a memory limit; cgroups report "no limit" as 0 or as a
// number near the top of the range.
func humanLimit(n uint64) string {
	if n == 0 || n >= 1<<62 {
		return "none"
	}
	return humanBytes(n)
}

func runPause(ctx context.Context, c *agentclient.Client, args []string) error {
	id, err := oneID(args, "pause ID")
	if err != nil {
		return err
	}
	if _, err = c.Agent.PauseContainer(ctx, &pb.PauseContainerRequest{ContainerId: id}); err != nil {
		return err
	}
	return emit(map[string]any{"container_id": id, "paused": true}, nil)
}

func runResume(ctx context.Context, c *agentclient.Client, args []string) error {
	id, err := oneID(args, "resume ID")
	if err != nil {
		return err
	}
	if _, err = c.Agent.ResumeContainer(ctx, &pb.ResumeContainerRequest{ContainerId: id}); err != nil {
		return err
	}
	return emit(map[string]any{"container_id": id, "paused": false}, nil)
}

func runRm(ctx context.Context, c *agentclient.Client, args []string) error {
	id, err := oneID(args, "rm ID")
	if err != nil {
		return err
	}
	if _, err = c.Agent.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: id}); err != nil {
		return err
	}
	return emit(map[string]any{"container_id": id, "removed": true}, nil)
}

func runCreateSandbox(ctx context.Context, c *agentclient.Client, args []string) error {
	fs := containerFlags("create-sandbox")
	id := fs.String("id", "", "sandbox id")
	hostname := fs.String("hostname", "", "hostname shared by the pod's containers")
	pidns := fs.Bool("sandbox-pidns", false, "containers created with sandbox_pidns share one pid namespace")
	var dns multiFlag
	fs.Var(&dns, "dns", "resolv.conf line (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errors.New("usage: create-sandbox [--id ID] [--hostname H] [--dns LINE]... [--sandbox-pidns]")
	}
	if _, err := c.Agent.CreateSandbox(ctx, &pb.CreateSandboxRequest{SandboxId: *id, Hostname: *hostname, Dns: dns, SandboxPidns: *pidns}); err != nil {
		return err
	}
	return emit(map[string]any{"sandbox_id": *id, "created": true}, nil)
}

func runDestroySandbox(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 0 {
		return errors.New("takes no arguments")
	}
	if _, err := c.Agent.DestroySandbox(ctx, &pb.DestroySandboxRequest{}); err != nil {
		return err
	}
	return emit(map[string]any{"destroyed": true}, nil)
}
