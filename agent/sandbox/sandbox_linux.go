package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
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
	s.mu.Lock()
	s.id, s.hostname, s.resolvConf, s.sharedNS = req.ID, req.Hostname, resolv, ns
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

// CreateContainerRequest is what CreateContainer needs.
type CreateContainerRequest struct {
	ID         string
	Spec       *specs.Spec
	Storages   []*pb.Storage
	Devices    []*pb.Device
	SandboxPID bool
}

// CreateContainer creates a container whose init waits for StartContainer.
func (s *Sandbox) CreateContainer(ctx context.Context, req CreateContainerRequest) (retErr error) {
	if err := container.ValidateID("container", req.ID); err != nil {
		return err
	}
	spec := req.Spec
	if spec == nil {
		return fmt.Errorf("container %q: no OCI spec: %w", req.ID, errdefs.ErrInvalidArgument)
	}
	if spec.Process == nil {
		return fmt.Errorf("container %q: spec has no process: %w", req.ID, errdefs.ErrInvalidArgument)
	}
	if len(spec.Process.Args) == 0 {
		return fmt.Errorf("container %q: process has no args: %w", req.ID, errdefs.ErrInvalidArgument)
	}
	if spec.Root == nil || spec.Root.Path == "" {
		return fmt.Errorf("container %q: spec has no rootfs: %w", req.ID, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(spec.Root.Path) {
		return fmt.Errorf("container %q: rootfs %q is not an absolute path: %w", req.ID, spec.Root.Path, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	if _, dup := s.containers[req.ID]; dup {
		s.mu.Unlock()
		return fmt.Errorf("container %q: %w", req.ID, errdefs.ErrAlreadyExists)
	}
	s.containers[req.ID] = nil
	s.mu.Unlock()
	storagesMounted := false
	defer func() {
		if retErr != nil {
			if storagesMounted {
				_ = s.cfg.Storage.Release(context.WithoutCancel(ctx), req.ID)
			}
			s.mu.Lock()
			delete(s.containers, req.ID)
			s.mu.Unlock()
		}
	}()
	if err := s.cfg.Storage.Mount(ctx, req.ID, req.Storages); err != nil {
		return fmt.Errorf("container %q storages: %w", req.ID, err)
	}
	storagesMounted = true
	// Checked after the storages: a block rootfs only exists once mounted.
	if st, err := os.Stat(spec.Root.Path); err != nil {
		return fmt.Errorf("container %q: rootfs %q: %v: %w", req.ID, spec.Root.Path, err, errdefs.ErrInvalidArgument)
	} else if !st.IsDir() {
		return fmt.Errorf("container %q: rootfs %q is not a directory: %w", req.ID, spec.Root.Path, errdefs.ErrInvalidArgument)
	}
	if err := s.cfg.Devices.Apply(ctx, req.Devices, spec); err != nil {
		return fmt.Errorf("container %q devices: %w", req.ID, err)
	}
	// Host hooks would run host-chosen programs as root in the guest,
	// outside the container; the runtime strips them too.
	spec.Hooks = nil
	pidns, err := s.adjustSpec(req.ID, spec, req.SandboxPID)
	if err != nil {
		return err
	}
	bundle := filepath.Join(s.cfg.BundleRoot, req.ID)
	if err := writeBundle(s.cfg.BundleRoot, bundle, spec); err != nil {
		_ = removeBundle(bundle)
		return fmt.Errorf("container %q bundle: %w", req.ID, err)
	}
	c, err := container.Create(container.Options{
		ID:          req.ID,
		Spec:        spec,
		StateRoot:   s.cfg.StateRoot,
		CgroupsPath: filepath.Join(s.cfg.CgroupGroup, req.ID),
		Reaper:      s.cfg.Reaper,
		Log:         s.log,
		OnOOM:       s.oom.push,
		HoldInit:    pidns.hold,
		Execs:       s.cfg.Execs,
	})
	if err != nil {
		_ = removeBundle(bundle)
		return err
	}
	if err := pidns.confirm(req.ID); err != nil {
		_ = c.Destroy(context.WithoutCancel(ctx))
		_ = removeBundle(bundle)
		return err
	}
	s.rememberTerminationLog(req.ID, spec)
	s.mu.Lock()
	s.containers[req.ID] = c
	if pidns.hold && s.pidnsOwner == "" {
		s.pidnsOwner = req.ID
	}
	s.mu.Unlock()
	return nil
}

// adjustSpec applies the sandbox's namespaces and DNS to a container spec.
// It returns how the container gets its pid namespace.
func (s *Sandbox) adjustSpec(id string, spec *specs.Spec, sandboxPID bool) (pidnsPlan, error) {
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	plan, err := s.planPidns(id, spec.Annotations, sandboxPID)
	if err != nil {
		return pidnsPlan{}, err
	}
	s.mu.Lock()
	shared := s.sharedNS
	resolv := s.resolvConf
	s.mu.Unlock()

	var nss []specs.LinuxNamespace
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			continue // decided below
		}
		if p, ok := shared[ns.Type]; ok {
			ns.Path = p
			if ns.Type == specs.UTSNamespace {
				spec.Hostname = "" // set once for the pod
			}
		}
		nss = append(nss, ns)
	}
	spec.Linux.Namespaces = append(nss, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: plan.join})

	if resolv != "" {
		has := false
		for _, m := range spec.Mounts {
			if m.Destination == "/etc/resolv.conf" {
				has = true
			}
		}
		if !has {
			spec.Mounts = append(spec.Mounts, specs.Mount{
				Destination: "/etc/resolv.conf", Source: resolv, Type: "bind",
				Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
			})
		}
	}
	return plan, nil
}

// bundleConfig is the one file a bundle directory holds.
const bundleConfig = "config.json"

// writeBundle writes the container's bundle: dir (root/<id>) with the
// spec as config.json. root holds bundles only, so no id can alias a
// directory of the agent or a storage.
func writeBundle(root, dir string, spec *specs.Spec) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, bundleConfig), b, 0o600)
}

// removeBundle unlinks what writeBundle created and nothing else: a
// bundle directory that holds anything more (or a mount) stays, with an
// error naming it, rather than being walked.
func removeBundle(dir string) error {
	if err := os.Remove(filepath.Join(dir, bundleConfig)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bundle %s holds more than the agent wrote; left in place: %w", dir, err)
	}
	return nil
}

// CgroupPaths maps each container id to its cgroup v2 path relative to
// the cgroup mount (e.g. "/kata-agent/abc"), for the metrics collector.
// Containers without a unified cgroup (v1) are left out.
func (s *Sandbox) CgroupPaths() map[string]string {
	if !cgroups.IsCgroup2UnifiedMode() {
		return map[string]string{} // v1 or hybrid: no unified container cgroups
	}
	s.mu.Lock()
	cs := make([]*container.Container, 0, len(s.containers))
	for _, c := range s.containers {
		if c != nil {
			cs = append(cs, c)
		}
	}
	s.mu.Unlock()
	out := make(map[string]string, len(cs))
	for _, c := range cs {
		if p := c.CgroupPaths()[""]; p != "" {
			if rel, ok := strings.CutPrefix(p, cgroupMount); ok && strings.HasPrefix(rel, "/") {
				out[c.ID()] = rel
			}
		}
	}
	return out
}

// cgroupMount is where libcontainer expects the unified hierarchy.
const cgroupMount = "/sys/fs/cgroup"

// UpdateCpusets widens the cpuset of every container that did not ask for
// specific CPUs to cpus, the guest's online CPU list after a hot-plug.
func (s *Sandbox) UpdateCpusets(cpus string) error {
	var errs []error
	for _, id := range s.containerIDs() {
		c, err := s.Container(id)
		if err != nil {
			continue // removed or still being created meanwhile
		}
		if err := c.FollowOnlineCPUs(cpus); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Container returns a created container.
func (s *Sandbox) Container(id string) (*container.Container, error) {
	if err := container.ValidateID("container", id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	c, ok := s.containers[id]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	if c == nil {
		return nil, fmt.Errorf("container %q is still being created: %w", id, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// Process returns a process of a container ("" exec id: its init).
func (s *Sandbox) Process(cid, execID string) (*container.Container, *container.Process, error) {
	c, err := s.Container(cid)
	if err != nil {
		return nil, nil, err
	}
	if execID != "" && execID != cid {
		if err := container.ValidateID("exec", execID); err != nil {
			return nil, nil, err
		}
	}
	p, err := c.Process(execID)
	return c, p, err
}

// StartContainer starts a created container.
func (s *Sandbox) StartContainer(id string) error {
	c, err := s.Container(id)
	if err != nil {
		return err
	}
	return c.Start()
}

// ExecProcess starts a process in a running container.
func (s *Sandbox) ExecProcess(cid, execID string, p *specs.Process) error {
	c, err := s.Container(cid)
	if err != nil {
		return err
	}
	if err := container.ValidateID("exec", execID); err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("exec %q: no process: %w", execID, errdefs.ErrInvalidArgument)
	}
	_, err = c.Exec(execID, p)
	return err
}

// WaitProcess waits for a process to exit and returns its status.
func (s *Sandbox) WaitProcess(ctx context.Context, cid, execID string) (int32, error) {
	c, p, err := s.Process(cid, execID)
	if err != nil {
		return 0, err
	}
	code, err := p.Wait(ctx)
	if err == nil {
		c.Waited(p)
	}
	return code, err
}

// RemoveContainer kills the container's processes, waits up to timeout
// (zero: no limit but ctx) and removes everything it owned.
func (s *Sandbox) RemoveContainer(ctx context.Context, id string, timeout time.Duration) error {
	c, err := s.Container(id)
	if err != nil {
		return err
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := c.Destroy(ctx); err != nil {
		return err
	}
	var errs []error
	if err := s.cfg.Storage.Release(context.WithoutCancel(ctx), id); err != nil {
		errs = append(errs, fmt.Errorf("container %q storages: %w", id, err))
	}
	if err := removeBundle(filepath.Join(s.cfg.BundleRoot, id)); err != nil {
		errs = append(errs, fmt.Errorf("container %q bundle: %w", id, err))
	}
	s.termLogs.Delete(id)
	s.mu.Lock()
	delete(s.containers, id)
	if s.pidnsOwner == id {
		s.pidnsOwner = ""
	}
	if len(s.containers) == 0 {
		s.scheduleTrim()
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

// GetOOMEvent blocks until a container is OOM-killed and returns its id.
func (s *Sandbox) GetOOMEvent(ctx context.Context) (string, error) {
	return s.oom.pop(ctx)
}

// RemoveStaleVirtiofsShareMounts unmounts virtio-fs mounts under the
// share directory that no container uses any more.
func (s *Sandbox) RemoveStaleVirtiofsShareMounts() error {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("virtiofs"))
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	s.mu.Lock()
	live := map[string]bool{}
	for id := range s.containers {
		live[id] = true
	}
	s.mu.Unlock()
	var errs []error
	for _, mp := range staleShareMounts(mounts, s.cfg.SharedDir, live) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// staleShareMounts picks the virtio-fs mounts below sharedDir/<cid>/ whose
// container is gone; the share itself and live containers' mounts stay.
// Deepest first, so nested mounts come off before their parents.
func staleShareMounts(mounts []*mountinfo.Info, sharedDir string, live map[string]bool) []string {
	prefix := filepath.Clean(sharedDir) + "/"
	var out []string
	for _, m := range mounts {
		if m.FSType != "virtiofs" || !strings.HasPrefix(m.Mountpoint, prefix) {
			continue
		}
		cid, _, _ := strings.Cut(strings.TrimPrefix(m.Mountpoint, prefix), "/")
		if cid == "" || live[cid] {
			continue
		}
		out = append(out, m.Mountpoint)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
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
