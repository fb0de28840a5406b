// Package wiring builds the agent from its concern packages: the one
// composition that kata-agent's main serves and the host-integration
// tests drive. Options move its directories and replace the parts a
// development host cannot give it (the guest's clock, a running reaper, a
// network namespace); everything else is what ships.
package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/device"
	"github.com/sandbox-guest/sandbox-guest/agent/hotplug"
	"github.com/sandbox-guest/sandbox-guest/agent/initsys"
	"github.com/sandbox-guest/sandbox-guest/agent/metrics"
	"github.com/sandbox-guest/sandbox-guest/agent/network"
	"github.com/sandbox-guest/sandbox-guest/agent/reaper"
	"github.com/sandbox-guest/sandbox-guest/agent/sandbox"
	"github.com/sandbox-guest/sandbox-guest/agent/server"
	"github.com/sandbox-guest/sandbox-guest/agent/storage"
	"github.com/sandbox-guest/sandbox-guest/agent/swap"
	"github.com/sandbox-guest/sandbox-guest/agent/uevent"
	"github.com/sandbox-guest/sandbox-guest/agent/version"
)

// Agent is the assembled agent: its server and the parts it serves.
type Agent struct {
	server  *server.Server
	sandbox *sandbox.Sandbox
	network *network.Manager
	// stops run in reverse order on Close.
	stops []func()
}

// New assembles the agent for cfg (the kernel command line and
// environment). It starts no goroutine at idle beyond the reaper and, as
// PID 1, the hot-plug follower.
func New(cfg config.Config, opts ...Option) (*Agent, error) {
	s := settings{}
	for _, o := range opts {
		o(&s)
	}
	log := s.log
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{}
	mark := s.mark
	if mark == nil {
		mark = func(string) {}
	}

	// Devices are waited for through uevents; the listener opens its
	// socket on first use.
	uevents := uevent.NewListener(nil, log)
	waiter := &device.Waiter{Events: uevents, Sysfs: device.Sysfs{Root: s.roots.Sysfs}, DevRoot: s.roots.Dev, Timeout: cfg.HotplugTimeout}
	storages := storage.New(storage.Config{Root: s.roots.Kata, Devices: waiter, SysfsRoot: s.roots.Sysfs, Log: log})
	a.network = network.New(network.Options{Handle: s.netlink, IPTables: s.iptables, Log: log, NICs: waiter})
	a.stops = append(a.stops, func() { a.network.Close() })
	mark("storage+network")

	// Containers: the reaper must run before anything forks.
	container.ForwardLibraryLogs(log)
	rp := s.reaper
	if rp == nil {
		r, err := reaper.Start(reaper.Options{Log: log})
		if err != nil {
			log.Warn("no child reaper", "error", err)
		}
		rp = r
	}
	mark("reaper")
	sb, err := sandbox.New(sandbox.Config{
		BundleRoot: s.roots.Bundles, SandboxDir: s.roots.Sandbox, SharedDir: s.roots.Shared,
		StateRoot: s.roots.State, ProcRoot: s.roots.Proc, CgroupGroup: s.cgroupGroup,
		Reaper: rp, Storage: storages, Devices: &device.Resolver{Waiter: waiter},
		WriteResolvConf: network.WriteResolvConf, Log: log, Execs: s.execs,
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.sandbox = sb
	onliner, err := hotplug.New(hotplug.Options{
		SysfsRoot:      s.roots.Sysfs,
		MemoryOnline:   cfg.MemoryOnline,
		OnlineCPUOnAdd: cfg.OnlineCPUOnAdd,
		Timeout:        cfg.HotplugTimeout,
		Cpusets:        sb,
		Log:            log,
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("hot-plug configuration: %w", err)
	}
	mark("sandbox+hotplug")
	if s.isInit {
		// Not on a development host: the host's CPUs and memory are not ours.
		a.stops = append(a.stops, followHotplug(uevents, onliner, log))
	}
	mark("follow-hotplug")
	sys := s.system
	if sys == nil {
		sys = guestSystem{}
	}
	srv, err := server.New(server.Options{
		Log:     log,
		Storage: storages,
		Network: a.network,
		Hotplug: onliner,
		Metrics: metrics.New(metrics.Options{ProcRoot: s.roots.Proc, Containers: sb}),
		AgentInfo: server.AgentInfo{
			Version:         version.Version,
			InitDaemon:      s.isInit,
			DeviceHandlers:  device.Types(),
			StorageHandlers: storage.Drivers(),
			SupportsSeccomp: seccompSupported,
			FIPS:            s.fips,
		},
		Sandbox:      sb,
		CopyFileRoot: s.roots.Shared,
		System:       sys,
		// Serve returns once the host has the DestroySandbox reply; PID 1
		// then powers off.
		StopAfterDestroy: s.isInit,
		Streams:          s.streams,
		Swap:             swap.New(swap.Config{Devices: waiter, DevRoot: s.roots.Dev, FileRoot: s.roots.Kata}),
		AgentLog:         s.agentLog,
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("create server: %w", err)
	}
	a.server = srv
	return a, nil
}

// Sandbox is the pod the agent serves (tests look at its state).
func (a *Agent) Sandbox() *sandbox.Sandbox { return a.sandbox }

// Serve serves the agent API on l until ctx ends or, as PID 1, until the
// host has the reply to DestroySandbox. Freed heap goes back to the kernel
// once a burst of requests is over (quietTrim).
func (a *Agent) Serve(ctx context.Context, l net.Listener) error {
	if a.server == nil {
		return errors.New("serve: the agent was not assembled")
	}
	return a.server.Serve(ctx, newQuietTrim(quietTrimDelay, quietTrimMinAlloc, quietTrimFirstMinAlloc).listener(l))
}

// Close stops what New started (the hot-plug follower, the network
// handle). The reaper runs for the life of the process.
func (a *Agent) Close() {
	for i := len(a.stops) - 1; i >= 0; i-- {
		a.stops[i]()
	}
	a.stops = nil
}

// guestSystem is the guest's clock and entropy pool.
type guestSystem struct{}

func (guestSystem) SetTime(sec, usec int64) error  { return initsys.SetTime(sec, usec) }
func (guestSystem) ReseedRandom(data []byte) error { return initsys.ReseedRandom(data) }

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
