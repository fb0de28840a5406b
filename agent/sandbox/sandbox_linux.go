package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/hooks"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/guestpath"
)

// Defaults for the guest; the paths are guestpath's layout.
const (
	DefaultCgroupGroup = "kata-agent"
	maxHostnameLen     = 64
	maxSignal          = 64 // SIGRTMAX on Linux
)

// Config configures a Sandbox. Every root is configurable so the agent can
// run on a development host (tests use temporary directories).
type Config struct {
	BundleRoot string // bundles at BundleRoot/<cid>, and nothing else there
	SandboxDir string // resolv.conf, ns/ (the agent's, not the runtime's storages)
	SharedDir  string // the virtio-fs share (RemoveStaleVirtiofsShareMounts)
	StateRoot  string // libcontainer state
	// CgroupGroup is the cgroup, relative to the agent's own (v1) or
	// parent (v2) cgroup, that holds one child cgroup per container.
	CgroupGroup string
	ProcRoot    string
	Reaper      container.Reaper
	Storage     StorageManager
	Devices     DeviceResolver
	// WriteResolvConf writes the sandbox DNS file (network.WriteResolvConf).
	// Storage, Devices and WriteResolvConf are required.
	WriteResolvConf func(path string, lines []string) error
	Log             *slog.Logger
	// Execs bounds exec'd processes and when finished ones are released.
	Execs container.ExecPolicy
}

// Sandbox is the pod: its settings and containers.
type Sandbox struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	created    bool
	id         string
	hostname   string
	resolvConf string // path, "" without DNS
	sharedNS   map[specs.LinuxNamespaceType]string
	pidnsOwner string                          // container whose init holds the shared pid ns
	containers map[string]*container.Container // nil value: being created
	termLogs   sync.Map                        // container id → its termination message file

	oom oomQueue

	guestHooks hooks.Set // from CreateSandbox, run for every container

	trim *time.Timer // returns freed memory once the sandbox goes idle
}

// idleTrimDelay is how long the sandbox must stay without containers
// before the agent hands its freed heap back to the kernel.
const idleTrimDelay = 500 * time.Millisecond

// scheduleTrim returns the heap freed by container work to the kernel once
// the sandbox has stayed empty for a moment: the Go heap otherwise keeps
// several MiB of freed spans, which the guest pays for. One timer, no
// goroutine at idle. Called with s.mu held.
func (s *Sandbox) scheduleTrim() {
	if s.trim != nil {
		s.trim.Stop()
	}
	s.trim = time.AfterFunc(idleTrimDelay, func() {
		s.mu.Lock()
		idle := len(s.containers) == 0
		s.mu.Unlock()
		if idle {
			debug.FreeOSMemory()
		}
	})
}

// New returns an empty sandbox.
func New(cfg Config) (*Sandbox, error) {
	if cfg.Storage == nil || cfg.Devices == nil || cfg.WriteResolvConf == nil {
		return nil, errors.New("sandbox: Storage, Devices and WriteResolvConf are required")
	}
	if cfg.BundleRoot == "" {
		cfg.BundleRoot = guestpath.BundleDir
	}
	if cfg.SandboxDir == "" {
		cfg.SandboxDir = guestpath.SandboxDir
	}
	if cfg.SharedDir == "" {
		cfg.SharedDir = guestpath.SharedDir
	}
	if cfg.StateRoot == "" {
		cfg.StateRoot = guestpath.StateDir
	}
	if cfg.CgroupGroup == "" {
		cfg.CgroupGroup = DefaultCgroupGroup
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Execs.Budget == nil {
		// One budget for the sandbox: what bounds the agent's descriptors
		// is the sum over its containers.
		cfg.Execs.Budget = container.NewExecBudget(container.DefaultMaxExecs)
	}
	s := &Sandbox{cfg: cfg, log: cfg.Log, containers: map[string]*container.Container{}}
	s.oom.init()
	return s, nil
}

// CreateSandboxRequest is what CreateSandbox needs.
type CreateSandboxRequest struct {
	ID       string
	Hostname string
	DNS      []string
	Storages []*pb.Storage
	// GuestHookPath is a guest directory of hooks (see package hooks).
	GuestHookPath string
}

// CreateSandbox sets up the pod: hostname and IPC in shared namespaces,
// the DNS file containers get, and sandbox-level storages.
func (s *Sandbox) CreateSandbox(ctx context.Context, req CreateSandboxRequest) (retErr error) {
	if req.ID != "" {
		if err := container.ValidateID("sandbox id", req.ID); err != nil {
			return err
		}
	}
	if len(req.Hostname) > maxHostnameLen {
		return fmt.Errorf("hostname is %d bytes, longer than %d: %w", len(req.Hostname), maxHostnameLen, errdefs.ErrInvalidArgument)
	}
	if strings.ContainsAny(req.Hostname, "\x00/ \n") {
		return fmt.Errorf("hostname %q contains invalid characters: %w", req.Hostname, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	if s.created {
		s.mu.Unlock()
		return fmt.Errorf("sandbox %q: %w", s.id, errdefs.ErrAlreadyExists)
	}
	s.created = true // reserve; undone on failure
	s.mu.Unlock()
	defer func() {
		if retErr != nil {
			s.mu.Lock()
			s.created = false
			s.mu.Unlock()
		}
	}()
	if err := os.MkdirAll(s.cfg.SandboxDir, 0o755); err != nil {
		return fmt.Errorf("sandbox directory: %w", err)
	}
	var resolv string
	if len(req.DNS) > 0 {
		resolv = filepath.Join(s.cfg.SandboxDir, "resolv.conf")
		if err := s.cfg.WriteResolvConf(resolv, req.DNS); err != nil {
			return fmt.Errorf("write %s: %w", resolv, err)
		}
	}
	defer func() {
		if retErr != nil && resolv != "" {
			_ = os.Remove(resolv)
		}
	}()
	ns, err := holdNamespaces(filepath.Join(s.cfg.SandboxDir, "ns"), req.Hostname)
	if err != nil {
		return err
	}
	if err := s.cfg.Storage.Mount(ctx, sandboxStorageOwner, req.Storages); err != nil {
		releaseNamespaces(ns)
		return fmt.Errorf("sandbox storages: %w", err)
	}
	// After the storages, as upstream: the hooks may live on the share.
	guestHooks, err := hooks.Scan(req.GuestHookPath, s.log)
	if err != nil {
		_ = s.cfg.Storage.Release(context.WithoutCancel(ctx), sandboxStorageOwner)
		releaseNamespaces(ns)
		return err
	}
	s.mu.Lock()
	s.id, s.hostname, s.resolvConf, s.sharedNS = req.ID, req.Hostname, resolv, ns
	s.guestHooks = guestHooks
	s.mu.Unlock()
	return nil
}

// sandboxStorageOwner holds the sandbox-level storage references. It is
// not a valid container id (container.ValidateID refuses '<'), so no
// container, not even the pause container that carries the sandbox id,
// can release the sandbox's storages (the share) by failing or going away.
const sandboxStorageOwner = "<sandbox>"

// DestroySandbox removes every container, releases the sandbox storages
// and namespaces. Powering off (as PID 1) is the caller's business.
func (s *Sandbox) DestroySandbox(ctx context.Context) error {
	var errs []error
	for _, id := range s.containerIDs() {
		if err := s.RemoveContainer(ctx, id, 0); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	ns, resolv, created := s.sharedNS, s.resolvConf, s.created
	s.created, s.id, s.hostname, s.sharedNS, s.resolvConf, s.pidnsOwner = false, "", "", nil, "", ""
	s.guestHooks = hooks.Set{}
	s.mu.Unlock()
	if created {
		if err := s.cfg.Storage.Release(ctx, sandboxStorageOwner); err != nil {
			errs = append(errs, fmt.Errorf("release sandbox storages: %w", err))
		}
	}
	releaseNamespaces(ns)
	if resolv != "" {
		_ = os.Remove(resolv)
	}
	s.oom.wake() // GetOOMEvent callers learn the sandbox is gone
	return errors.Join(errs...)
}

func (s *Sandbox) containerIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.containers))
	for id, c := range s.containers {
		if c != nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// holdNamespaces creates the pod's UTS and IPC namespaces on a locked OS
// thread that is thrown away afterwards, sets the hostname in the new UTS
// namespace and keeps both alive with bind mounts under dir.
func holdNamespaces(dir, hostname string) (map[specs.LinuxNamespaceType]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("namespace directory: %w", err)
	}
	paths := map[specs.LinuxNamespaceType]string{
		specs.UTSNamespace: filepath.Join(dir, "uts"),
		specs.IPCNamespace: filepath.Join(dir, "ipc"),
	}
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o444)
		if err != nil {
			return nil, fmt.Errorf("namespace file: %w", err)
		}
		_ = f.Close()
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread's namespaces differ from the rest of
		// the process, so the runtime must discard it when this returns.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWUTS | unix.CLONE_NEWIPC); err != nil {
				return fmt.Errorf("unshare uts and ipc namespaces: %w", err)
			}
			if hostname != "" {
				if err := unix.Sethostname([]byte(hostname)); err != nil {
					return fmt.Errorf("set hostname %q: %w", hostname, err)
				}
			}
			tid := unix.Gettid()
			for typ, p := range paths {
				src := fmt.Sprintf("/proc/%d/task/%d/ns/%s", os.Getpid(), tid, typ)
				if err := unix.Mount(src, p, "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("bind %s namespace to %s: %w", typ, p, err)
				}
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		releaseNamespaces(paths)
		return nil, err
	}
	return paths, nil
}

func releaseNamespaces(paths map[specs.LinuxNamespaceType]string) {
	for _, p := range paths {
		_ = unix.Unmount(p, unix.MNT_DETACH)
		_ = os.Remove(p)
	}
}
