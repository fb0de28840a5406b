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
	"syscall"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/device"
	"github.com/sandbox-guest/sandbox-guest/agent/fips"
	"github.com/sandbox-guest/sandbox-guest/agent/hotplug"
	"github.com/sandbox-guest/sandbox-guest/agent/initsys"
	"github.com/sandbox-guest/sandbox-guest/agent/logging"
	"github.com/sandbox-guest/sandbox-guest/agent/metrics"
	"github.com/sandbox-guest/sandbox-guest/agent/network"
	"github.com/sandbox-guest/sandbox-guest/agent/reaper"
	"github.com/sandbox-guest/sandbox-guest/agent/sandbox"
	"github.com/sandbox-guest/sandbox-guest/agent/server"
	"github.com/sandbox-guest/sandbox-guest/agent/storage"
	"github.com/sandbox-guest/sandbox-guest/agent/uevent"
	"github.com/sandbox-guest/sandbox-guest/agent/version"
)

func init() {
	// libcontainer re-executes this binary as each container's init.
	if container.IsInit() {
		container.Init()
	}
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
	if isInit {
		// The command line is in /proc, which PID 1 has to mount first.
		if err := initsys.MountKernelFilesystems(nil); err != nil {
			fmt.Fprintln(os.Stderr, "kata-agent:", err)
		}
	}

	cmdline, _ := os.ReadFile("/proc/cmdline")
	cfg, cfgErrs := config.Parse(string(cmdline))
	cfgErrs = append(cfgErrs, cfg.ApplyEnv(os.Getenv)...)

	logSwitch := logging.NewSwitch(os.Stderr)
	// Log lines are queued; write out what is left when the agent exits,
	// re-executes or powers off (bounded: the destination may be stuck).
	flushLog := func() { logSwitch.Flush(logFlushTimeout) }
	defer flushLog()
	log := logging.New(logSwitch, cfg.LogLevel)
	slog.SetDefault(log)
	for _, err := range cfgErrs {
		log.Warn("configuration", "error", err)
	}

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
	// Freed heap goes back to the kernel once a burst of requests is over.
	l = newQuietTrim(quietTrimDelay, quietTrimMinAlloc).listener(l)
	boot.mark("listen")
	// Devices are waited for through uevents; the listener opens its
	// socket on first use.
	uevents := uevent.NewListener(nil, log)
	waiter := &device.Waiter{Events: uevents, Timeout: cfg.HotplugTimeout}
	storages := storage.New(storage.Config{Devices: waiter, Log: log})
	nw := network.New(network.Options{Log: log, NICs: waiter})
	defer nw.Close()
	boot.mark("storage+network")

	// Containers: the reaper must run before anything forks.
	container.ForwardLibraryLogs(log)
	rp, err := reaper.Start(reaper.Options{Log: log})
	if err != nil {
		log.Warn("no child reaper", "error", err)
	}
	boot.mark("reaper")
	sb := sandbox.New(sandbox.Config{
		Reaper: rp, Storage: storages, Devices: &device.Resolver{Waiter: waiter},
		WriteResolvConf: network.WriteResolvConf, Log: log,
	})
	onliner, err := hotplug.New(hotplug.Options{
		MemoryOnline:   cfg.MemoryOnline,
		OnlineCPUOnAdd: cfg.OnlineCPUOnAdd,
		Timeout:        cfg.HotplugTimeout,
		Cpusets:        sb,
		Log:            log,
	})
	if err != nil {
		log.Error("hot-plug configuration", "error", err)
		return 1
	}
	boot.mark("sandbox+hotplug")
	if isInit {
		// Not on a development host: the host's CPUs and memory are not ours.
		defer followHotplug(uevents, onliner, log)()
	}
	boot.mark("follow-hotplug")
	streams := listenStreams(ctx, cfg.PassfdListenerPort, log)
	srv, err := server.New(server.Options{
		Streams: streams,
		Log:     log,
		Storage: storages,
		Network: nw,
		Hotplug: onliner,
		Metrics: metrics.New(metrics.Options{Containers: sb}),
		AgentInfo: server.AgentInfo{
			Version:         version.Version,
			InitDaemon:      isInit,
			DeviceHandlers:  device.Types(),
			StorageHandlers: storage.Drivers(),
			SupportsSeccomp: seccompSupported,
			FIPS:            fipsStatus.Agent,
		},
		Sandbox: sb,
		// Serve returns once the host has the DestroySandbox reply; PID 1
		// then powers off.
		StopAfterDestroy: isInit,
	})
	if err != nil {
		log.Error("create server", "error", err)
		return 1
	}

	if !isInit {
		// PID 1 ignores these signals by default; a daemon stops cleanly.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		go func() {
			s := <-sigs
			log.Info("stopping", "signal", s.String())
			cancel()
		}()
	}

	if err := initsys.StartDebugConsole(ctx, initsys.ConsoleOptions{
		Enabled: cfg.DebugConsole, Port: cfg.DebugConsolePort, Log: log,
	}); err != nil {
		log.Warn("debug console", "error", err)
	}

	boot.mark("server")
	log.Info("serving", "addr", cfg.ServerAddr, "boot", boot.String())
	if err := srv.Serve(ctx, l); err != nil {
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

// followHotplug onlines memory (and CPUs when configured) as soon as the
// kernel announces them, so hot-plugged memory is usable before the
// runtime's OnlineCPUMem arrives; then it onlines what was added before the
// subscription. The returned function stops following.
func followHotplug(uevents *uevent.Listener, o *hotplug.Onliner, log *slog.Logger) (stop func()) {
	if err := uevents.Start(); err != nil {
		log.Warn("uevents unavailable; hot-plugged memory waits for OnlineCPUMem", "error", err)
	}
	events, cancel := uevents.Subscribe(func(e uevent.Event) bool { return o.WantsUevent(e.Action, e.Subsystem) })
	go func() {
		for e := range events {
			o.HandleUevent(e.Action, e.Subsystem, e.DevPath)
		}
	}()
	if err := o.OnlineAllOffline(); err != nil {
		log.Warn("online hot-plugged CPUs and memory at start-up", "error", err)
	}
	return cancel
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
