// Go's FIPS 140-3 module is built in (GOFIPS140) but off by default: FIPS
// is the exception (the host adds fips=1 on FIPS nodes), and Go reads
// fips140 only at process start, so a default of on cost every boot a
// re-exec of PID 1 and the module's self-tests. On a fips=1 kernel PID 1
// re-executes itself with GODEBUG=fips140=on (see pid1Env).
//go:debug fips140=off

// Command kata-agent is the guest agent: PID 1 of a pod VM (or a root daemon
// on a development host) serving the Kata agent API over ttrpc.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/fips"
	"github.com/sandbox-guest/sandbox-guest/agent/initsys"
	"github.com/sandbox-guest/sandbox-guest/agent/logging"
	"github.com/sandbox-guest/sandbox-guest/agent/server"
	"github.com/sandbox-guest/sandbox-guest/agent/version"
	"github.com/sandbox-guest/sandbox-guest/agent/wiring"
)

func init() {
	// libcontainer re-executes this binary as each container's init.
	if container.IsInit() {
		container.Init()
	}
	// main keeps the process's first thread (the thread group leader) to
	// itself, so that no other goroutine runs there. Goroutines that
	// enter a namespace lock their thread and end without unlocking it
	// (libcontainer does so in each container's mount namespace), and the
	// runtime ends such a thread, except the first one, which it parks
	// for ever, still inside: the container's mount namespace, and every
	// file system mounted in it, would outlive the container (a block
	// volume never unmounted, its last writes never on the disk), and
	// /proc/self would show the container's mounts.
	runtime.LockOSThread()
}

// logFlushTimeout bounds how long queued log lines may hold up an exit,
// a re-exec or the power-off.
const logFlushTimeout = 2 * time.Second

func main() {
	os.Exit(run())
}

func run() int {
	isInit := os.Getpid() == 1
	boot := newBootSteps()
	cfg, logSwitch, logRing, log := configure(isInit)
	// Log lines are queued; write out what is left when the agent exits,
	// re-executes or powers off (bounded: the destination may be stuck).
	flushLog := func() { logSwitch.Flush(logFlushTimeout) }
	defer flushLog()

	boot.mark("config")
	// As PID 1 on its first start this moves to a root that allows
	// pivot_root and re-executes the agent: it does not return then. The
	// re-executed agent's Go FIPS mode follows the kernel's.
	boot.handOn()
	setup := initsys.Options{IsInit: isInit, UnifiedCgroups: cfg.UnifiedCgroups, Log: log, FlushLog: flushLog}
	if isInit {
		setup.ReexecEnv, setup.Reexec = pid1Env(log)
	}
	if err := initsys.Setup(setup); err != nil {
		log.Error("system setup", "error", err)
	}

	_ = os.Unsetenv(envBootSteps)
	boot.mark("setup")
	fipsStatus, err := fips.Read("/proc")
	if err == nil {
		err = fips.Verify(fipsStatus, isInit)
	}
	log.Info("starting", "version", version.Version, "api", version.APIVersion, "pid", os.Getpid(),
		"init", isInit, "fips", fipsStatus.Mode(), "server_addr", cfg.ServerAddr)
	if err != nil {
		log.Error("refusing to serve", "error", err)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if cfg.LogVport != 0 {
		if err := serveLogPort(ctx, cfg.LogVport, logSwitch); err != nil {
			log.Warn("log port unavailable; logging to the console", "port", cfg.LogVport, "error", err)
		}
	}

	boot.mark("fips+log")
	addr, err := config.ParseAddr(cfg.ServerAddr)
	if err != nil {
		log.Error("bad server address", "error", err)
		return 1
	}
	l, err := server.Listen(addr)
	if err != nil {
		log.Error("listen", "error", err)
		return 1
	}
	boot.mark("listen")
	agent, err := wiring.New(cfg, wiring.WithLog(log), wiring.AsInit(isInit), wiring.WithFIPS(fipsStatus.Agent),
		wiring.WithStepMarks(boot.mark), wiring.WithStreams(listenStreams(ctx, cfg.PassfdListenerPort, log)),
		wiring.WithAgentLog(logRing))
	if err != nil {
		log.Error("assemble the agent", "error", err)
		return 1
	}
	defer agent.Close()

	if !isInit {
		// PID 1 ignores these signals by default; a daemon stops cleanly.
		stopOnSignal(cancel, log)
	}

	if err := initsys.StartDebugConsole(ctx, initsys.ConsoleOptions{
		Enabled: cfg.DebugConsole, Port: cfg.DebugConsolePort, Log: log,
	}); err != nil {
		log.Warn("debug console", "error", err)
	}

	boot.mark("server")
	log.Info("serving", "addr", cfg.ServerAddr, "boot", boot.String())
	if err := agent.Serve(ctx, l); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	log.Info("server stopped")
	if isInit {
		// Sync, unmount and power off; returns only if that failed.
		if err := initsys.Shutdown(initsys.Options{IsInit: true, Log: log, FlushLog: flushLog}); err != nil {
			log.Error("shutdown", "error", err)
		}
	}
	return 0
}

// configure reads the kernel command line and the environment (as PID 1
// after mounting /proc, where the command line is) and sets up logging;
// configuration errors are logged as warnings. Every line also goes to a
// ring of recent lines that diagnostics fetch (GetDiagnosticData
// "agent_log"), whether or not a host reads the log port.
func configure(isInit bool) (config.Config, *logging.Switch, *logging.Ring, *slog.Logger) {
	if isInit {
		if err := initsys.MountKernelFilesystems(nil); err != nil {
			fmt.Fprintln(os.Stderr, "kata-agent:", err)
		}
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	cfg, cfgErrs := config.Parse(string(cmdline))
	cfgErrs = append(cfgErrs, cfg.ApplyEnv(os.Getenv)...)

	logSwitch := logging.NewSwitch(os.Stderr)
	logRing := logging.NewRing(logging.DefaultRingLines, logging.DefaultRingBytes)
	log := logging.New(io.MultiWriter(logRing, logSwitch), cfg.LogLevel)
	slog.SetDefault(log)
	for _, err := range cfgErrs {
		log.Warn("configuration", "error", err)
	}
	return cfg, logSwitch, logRing, log
}

// stopOnSignal calls cancel on SIGTERM or SIGINT.
func stopOnSignal(cancel func(), log *slog.Logger) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		log.Info("stopping", "signal", s.String())
		cancel()
	}()
}

// listenStreams opens the stream-port listener when configured; without
// it (nil) requests naming stream ports are refused.
func listenStreams(ctx context.Context, port uint32, log *slog.Logger) *container.StreamBroker {
	if port == 0 {
		return nil
	}
	l, err := vsock.ListenContextID(0xFFFFFFFF, port, nil)
	if err != nil {
		log.Warn("stream port listener unavailable; stream ports refused", "port", port, "error", err)
		return nil
	}
	context.AfterFunc(ctx, func() { l.Close() })
	return container.NewStreamBroker(l)
}

// serveLogPort attaches each host connection on the vsock log port to the
// logger; a new connection replaces the previous one.
func serveLogPort(ctx context.Context, port uint32, sw *logging.Switch) error {
	l, err := vsock.ListenContextID(0xFFFFFFFF, port, nil)
	if err != nil {
		return fmt.Errorf("listen on vsock port %d: %w", port, err)
	}
	context.AfterFunc(ctx, func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			sw.Attach(struct {
				io.Writer
				io.Closer
			}{c, c})
		}
	}()
	return nil
}

// defaultPath is PID 1's PATH when the kernel gives none (it never does):
// the agent finds the image's iptables-save/-restore through it.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// pid1Env returns the environment the agent re-executes itself with as PID
// 1, and whether it must re-execute even when its root needs no move: a
// PATH, and the GODEBUG that puts Go's cryptography in the kernel's FIPS
// mode. Without a readable kernel mode nothing changes, and the FIPS check
// after the re-exec refuses to serve.
func pid1Env(log *slog.Logger) (env []string, reexec bool) {
	if os.Getenv("PATH") == "" {
		env = append(env, "PATH="+defaultPath)
		_ = os.Setenv("PATH", defaultPath)
	}
	if os.Getenv(initsys.EnvNewRoot) != "" {
		return env, false
	}
	st, err := fips.Read("/proc")
	if err != nil {
		log.Warn("kernel FIPS mode unknown; Go FIPS mode left as built", "error", err)
		return env, false
	}
	godebug, reexec := fips.Follow(os.Getenv("GODEBUG"), st)
	return append(env, "GODEBUG="+godebug), reexec
}
