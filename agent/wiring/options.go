package wiring

import (
	"log/slog"

	"github.com/vishvananda/netlink"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/network"
	"github.com/sandbox-guest/sandbox-guest/agent/server"
)

// Roots are the places the agent works in. An empty field keeps the
// guest's path (protocols/guestpath, /sys, /dev, /proc); a development
// host or a test moves them under a directory of its own.
type Roots struct {
	Bundles string // container bundles (guestpath.BundleDir)
	Sandbox string // the sandbox's resolv.conf and namespace files (guestpath.SandboxDir)
	Shared  string // the virtio-fs share (guestpath.SharedDir); also confines CopyFile
	State   string // libcontainer state (guestpath.StateDir)
	Kata    string // confines storage mount points (guestpath.KataRoot)
	Sysfs   string // hot-plug, device discovery and hugepage pools (/sys)
	Dev     string // device nodes (/dev)
	Proc    string // process information and metrics (/proc)
}

// settings is what the options set; the zero value is the guest's.
type settings struct {
	log         *slog.Logger
	isInit      bool
	fips        bool
	roots       Roots
	cgroupGroup string
	reaper      container.Reaper
	execs       container.ExecPolicy
	netlink     *netlink.Handle
	iptables    network.IPTables
	system      server.System
	mark        func(step string)
	streams     *container.StreamBroker
	agentLog    server.AgentLog
}

// Option adjusts how the agent is put together.
type Option func(*settings)

// WithLog sets the logger of every part (default slog.Default()).
func WithLog(l *slog.Logger) Option { return func(s *settings) { s.log = l } }

// AsInit says the agent is PID 1 of the guest: the server stops after
// DestroySandbox, GetGuestDetails reports an init daemon, and hot-plugged
// CPUs and memory are followed through uevents (on a development host the
// host's CPUs and memory are not ours).
func AsInit(isInit bool) Option { return func(s *settings) { s.isInit = isInit } }

// WithFIPS reports the agent's FIPS mode in GetGuestDetails.
func WithFIPS(on bool) Option { return func(s *settings) { s.fips = on } }

// WithRoots moves the agent's directories (empty fields keep the guest's).
func WithRoots(r Roots) Option { return func(s *settings) { s.roots = r } }

// WithCgroupGroup names the cgroup that holds the containers' cgroups
// (default sandbox.DefaultCgroupGroup).
func WithCgroupGroup(name string) Option { return func(s *settings) { s.cgroupGroup = name } }

// WithReaper uses a reaper that is already running (a process has one);
// without it New starts one.
func WithReaper(r container.Reaper) Option { return func(s *settings) { s.reaper = r } }

// WithExecPolicy bounds exec'd processes (default container's policy).
func WithExecPolicy(p container.ExecPolicy) Option { return func(s *settings) { s.execs = p } }

// WithNetlink manages the network namespace of h instead of the agent's
// own.
func WithNetlink(h *netlink.Handle) Option { return func(s *settings) { s.netlink = h } }

// WithIPTables runs iptables-save/-restore as configured (default PATH).
func WithIPTables(ipt network.IPTables) Option { return func(s *settings) { s.iptables = ipt } }

// WithSystem replaces the guest clock and entropy pool that
// SetGuestDateTime and ReseedRandomDev change (default initsys's system
// calls): a development host's clock is not the agent's to set.
func WithSystem(sys server.System) Option { return func(s *settings) { s.system = sys } }

// WithStreams hands stdio over the stream-port connections of b
// (agent.passfd_listener_port); without it, requests naming stream ports
// are refused.
func WithStreams(b *container.StreamBroker) Option { return func(s *settings) { s.streams = b } }

// WithStepMarks has mark called as each assembly step ends (main records
// the start-up steps with it): "storage+network", "reaper",
// "sandbox+hotplug", "follow-hotplug".
func WithStepMarks(mark func(step string)) Option { return func(s *settings) { s.mark = mark } }

// WithAgentLog serves the agent's recent log lines (a *logging.Ring) as
// GetDiagnosticData "agent_log"; without it that type is refused.
func WithAgentLog(l server.AgentLog) Option { return func(s *settings) { s.agentLog = l } }
