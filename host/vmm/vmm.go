// Package vmm boots a guest image in QEMU for tests and demos: it starts
// virtiofsd on a shared directory, a vhost-user-vsock backend and QEMU
// (q35, memfd shared memory, memory and CPU hot-plug slots, serial
// console to a log file), talks QMP to it, and tears every process down
// again on success, failure, timeout and interrupt.
package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sandbox-guest/sandbox-guest/host/qmp"
)

// ErrKilled reports that QEMU ended from a signal rather than exiting.
var ErrKilled = errors.New("killed by signal")

// ErrNotRunning is returned when QEMU exited before the request.
var ErrNotRunning = errors.New("qemu is not running")

// VsockBackend is a running vhost-user-vsock backend.
type VsockBackend interface {
	// Serve runs the device until ctx is done or QEMU disconnects.
	Serve(ctx context.Context) error
	Close() error
}

// VsockListener creates a backend listening for QEMU on vhostSocket and
// exposing hybrid vsock (CONNECT <port>) to host programs on udsPath. It
// must be listening when it returns: QEMU does not retry the connection.
type VsockListener func(vhostSocket, udsPath string, guestCID uint64) (VsockBackend, error)

// VM is a running QEMU guest and the helpers it needs.
type VM struct {
	cfg     config
	dir     string
	ownDir  bool
	paths   paths
	started time.Time

	qemu      *process
	virtiofsd *process

	vsock       VsockBackend
	vsockCancel context.CancelFunc
	vsockDone   chan error

	stopCtx func() bool

	qmpCli *qmp.Client

	dimmMu sync.Mutex
	dimms  int
	cpus   int

	closeOnce sync.Once
	closeErr  error
	tailMu    sync.Mutex
	tail      string // console tail saved before the work directory is removed
}

// Start boots a VM. The VM lives until Close, or until ctx is done (which
// tears it down like Close): pass a context cancelled on interrupt. On any
// error everything started so far is stopped again.
func Start(ctx context.Context, opts ...Option) (_ *VM, err error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("vmm: %w", err)
		}
	}
	if !cfg.vsockSet {
		cfg.vsock = defaultVsock(cfg.log)
	}
	if err := checkFiles(&cfg); err != nil {
		return nil, fmt.Errorf("vmm: %w", err)
	}

	v := &VM{cfg: cfg}
	if cfg.workDir != "" {
		if err := os.MkdirAll(cfg.workDir, 0o700); err != nil {
			return nil, fmt.Errorf("vmm: work directory: %w", err)
		}
		v.dir = cfg.workDir
	} else {
		d, err := os.MkdirTemp("", "vmm-")
		if err != nil {
			return nil, fmt.Errorf("vmm: work directory: %w", err)
		}
		v.dir, v.ownDir = d, true
	}
	v.paths = paths{
		qmp:         filepath.Join(v.dir, "qmp.sock"),
		vhostVsock:  filepath.Join(v.dir, "vhost-vsock.sock"),
		hybridVsock: filepath.Join(v.dir, "vsock.sock"),
		virtiofs:    filepath.Join(v.dir, "virtiofs.sock"),
		console:     filepath.Join(v.dir, "console.log"),
		qemuLog:     filepath.Join(v.dir, "qemu.log"),
		virtiofsLog: filepath.Join(v.dir, "virtiofsd.log"),
	}
	if cfg.consoleLog != "" {
		v.paths.console = cfg.consoleLog
	}
	if l := len(v.paths.hybridVsock) + len("_4294967295"); l > 107 {
		v.cleanupDir()
		return nil, fmt.Errorf("vmm: work directory %s too long for Unix socket paths", v.dir)
	}
	defer func() {
		if err != nil {
			tail := v.ConsoleTail(2048)
			qlog := v.QEMULogTail(2048)
			v.Close()
			if tail != "" {
				err = fmt.Errorf("%w\n--- console tail ---\n%s", err, tail)
			}
			if qlog != "" {
				err = fmt.Errorf("%w\n--- qemu output ---\n%s", err, qlog)
			}
		}
	}()

	if cfg.sharedDir != "" {
		if err := v.startVirtiofsd(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.vsock != nil {
		if err := v.startVsock(); err != nil {
			return nil, err
		}
	}
	args, err := qemuArgs(&cfg, v.paths, cfg.vsock != nil, cfg.sharedDir != "")
	if err != nil {
		return nil, fmt.Errorf("vmm: %w", err)
	}
	cfg.log.Debug("starting qemu", "bin", cfg.qemu, "args", args)
	v.started = time.Now()
	v.qemu, err = startProcess("qemu", cfg.qemu, args, v.paths.qemuLog)
	if err != nil {
		return nil, fmt.Errorf("vmm: %w", err)
	}

	// Until Start returns, ctx bounds each wait below and a failure tears
	// down through the deferred Close; afterwards ctx ending does.
	wctx, cancel := context.WithTimeout(ctx, cfg.startTimeout)
	defer cancel()
	if err := waitSocket(wctx, v.paths.qmp, v.qemu); err != nil {
		return nil, fmt.Errorf("vmm: qemu did not open its QMP socket: %w", err)
	}
	c, err := dialQMP(wctx, v.paths.qmp, v.qemu)
	if err != nil {
		return nil, fmt.Errorf("vmm: %w", err)
	}
	v.qmpCli = c
	v.stopCtx = context.AfterFunc(ctx, func() { v.Close() })
	cfg.log.Info("qemu started", "pid", v.qemu.pid(), "dir", v.dir)
	return v, nil
}

func checkFiles(c *config) error {
	for _, f := range []struct{ what, path string }{{"kernel", c.kernel}, {"initrd", c.initrd}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.what, err)
		}
	}
	if _, err := exec.LookPath(c.qemu); err != nil {
		return fmt.Errorf("qemu binary: %w", err)
	}
	if c.sharedDir != "" {
		if strings.Contains(c.sharedDir, ",") {
			return fmt.Errorf("shared directory %q contains a comma, which virtiofsd's -o syntax cannot carry", c.sharedDir)
		}
		st, err := os.Stat(c.sharedDir)
		if err != nil {
			return fmt.Errorf("shared directory: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("shared directory %s is not a directory", c.sharedDir)
		}
		if _, err := exec.LookPath(c.virtiofsd); err != nil {
			return fmt.Errorf("virtiofsd binary: %w", err)
		}
	}
	return nil
}

func (v *VM) startVirtiofsd(ctx context.Context) error {
	p, err := startProcess("virtiofsd", v.cfg.virtiofsd, virtiofsdArgs(&v.cfg, v.paths), v.paths.virtiofsLog)
	if err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	v.virtiofsd = p
	wctx, cancel := context.WithTimeout(ctx, v.cfg.startTimeout)
	defer cancel()
	// Only wait for the socket to exist: virtiofsd serves a single
	// connection, so probing it with a connect would use it up.
	if err := waitSocket(wctx, v.paths.virtiofs, p); err != nil {
		return fmt.Errorf("vmm: virtiofsd did not open %s: %w\n%s", v.paths.virtiofs, err, tailFile(v.paths.virtiofsLog, 1024))
	}
	v.cfg.log.Debug("virtiofsd listening", "pid", p.pid(), "socket", v.paths.virtiofs)
	return nil
}

func (v *VM) startVsock() error {
	b, err := v.cfg.vsock(v.paths.vhostVsock, v.paths.hybridVsock, v.cfg.guestCID)
	if err != nil {
		return fmt.Errorf("vmm: vsock backend: %w", err)
	}
	if b == nil {
		return fmt.Errorf("vmm: vsock backend: listener returned no backend")
	}
	ctx, cancel := context.WithCancel(context.Background())
	v.vsock, v.vsockCancel, v.vsockDone = b, cancel, make(chan error, 1)
	go func() { v.vsockDone <- b.Serve(ctx) }()
	return nil
}

// waitSocket polls until path is a socket, p exits, or ctx is done.
func waitSocket(ctx context.Context, path string, p *process) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if st, err := os.Stat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
			// The file appears at bind(); a connect before listen() is
			// refused, and QEMU does not retry, so wait for listen().
			if listening, ok := unixListening("/proc/net/unix", path); listening || !ok {
				return nil
			}
		}
		select {
		case <-p.done:
			code, err := p.exitCode()
			if err != nil {
				return fmt.Errorf("%s exited: %w", p.name, err)
			}
			return fmt.Errorf("%s exited with status %d", p.name, code)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// dialQMP connects to QEMU's QMP socket. The socket file appears at
// bind(), a moment before QEMU listens, so a refused connection is retried
// while QEMU runs.
func dialQMP(ctx context.Context, path string, p *process) (*qmp.Client, error) {
	for {
		c, err := qmp.Dial(ctx, path)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			return c, err
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("qemu exited while connecting to QMP: %w", err)
		case <-ctx.Done():
			return nil, err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Dir is the work directory holding sockets and logs.
func (v *VM) Dir() string { return v.dir }

// Started is when QEMU was started.
func (v *VM) Started() time.Time { return v.started }

// QEMUPid is QEMU's process id.
func (v *VM) QEMUPid() int { return v.qemu.pid() }

// VirtiofsdPid is virtiofsd's process id, 0 without a shared directory.
func (v *VM) VirtiofsdPid() int {
	if v.virtiofsd == nil {
		return 0
	}
	return v.virtiofsd.pid()
}

// VsockSocket is the hybrid vsock Unix socket (empty without vsock).
func (v *VM) VsockSocket() string {
	if v.vsock == nil {
		return ""
	}
	return v.paths.hybridVsock
}

// AgentAddress is the address the Kata runtime would dial for the agent
// on port: hvsock://<socket>:<port>.
func (v *VM) AgentAddress(port uint32) string {
	return fmt.Sprintf("hvsock://%s:%d", v.paths.hybridVsock, port)
}

// ConsolePath is the serial console log.
func (v *VM) ConsolePath() string { return v.paths.console }

// QMP is the VM's QMP connection.
func (v *VM) QMP() *qmp.Client { return v.qmpCli }

// Exited is closed when QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.qemu.done }

// Wait blocks until QEMU exits or ctx is done and returns QEMU's exit
// status; a QEMU ended by a signal yields -1 and an error wrapping ErrKilled.
func (v *VM) Wait(ctx context.Context) (int, error) {
	select {
	case <-v.qemu.done:
		return v.qemu.exitCode()
	case <-ctx.Done():
		// A context bound to this VM ends because QEMU exited: report that.
		select {
		case <-v.qemu.done:
			return v.qemu.exitCode()
		default:
		}
		return -1, fmt.Errorf("wait for qemu: %w", ctx.Err())
	}
}

// Bound returns a context that also ends, with cause ErrNotRunning, when
// QEMU exits: waits on the guest (boot, RPCs) then stop at once instead of
// running into their timeout.
func (v *VM) Bound(ctx context.Context) (context.Context, context.CancelFunc) {
	bctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-v.qemu.done:
			code, err := v.qemu.exitCode()
			if err != nil {
				cancel(fmt.Errorf("%w: %w", ErrNotRunning, err))
			} else {
				cancel(fmt.Errorf("%w: exited with status %d", ErrNotRunning, code))
			}
		case <-bctx.Done():
		}
	}()
	return bctx, func() { cancel(context.Canceled) }
}

// ExitCode is QEMU's exit status after it exited; see Wait.
func (v *VM) ExitCode() (int, error) {
	if !v.qemu.exited() {
		return -1, ErrNotRunning
	}
	return v.qemu.exitCode()
}

// HotplugMemory adds a DIMM of size bytes and returns its device id.
func (v *VM) HotplugMemory(ctx context.Context, size uint64) (string, error) {
	v.dimmMu.Lock()
	v.dimms++
	id := fmt.Sprintf("dimm%d", v.dimms)
	v.dimmMu.Unlock()
	if err := v.qmpCli.HotplugMemory(ctx, id, size); err != nil {
		return "", err
	}
	return id, nil
}

// HotplugCPU adds one vCPU and returns its device id.
func (v *VM) HotplugCPU(ctx context.Context) (string, error) {
	v.dimmMu.Lock()
	v.cpus++
	id := fmt.Sprintf("cpu%d", v.cpus)
	v.dimmMu.Unlock()
	if _, err := v.qmpCli.HotplugCPU(ctx, id); err != nil {
		return "", err
	}
	return id, nil
}

// Shutdown asks QEMU to quit through QMP and waits for it to exit, within
// ctx; it does not release the helpers (Close does).
func (v *VM) Shutdown(ctx context.Context) (int, error) {
	if !v.qemu.exited() {
		if err := v.qmpCli.Quit(ctx); err != nil {
			return -1, fmt.Errorf("vmm: shutdown: %w", err)
		}
	}
	return v.Wait(ctx)
}

// Close tears everything down: QEMU (SIGTERM, then SIGKILL to its
// process group after the stop timeout), virtiofsd (given the same time to
// exit on its own, as it does once QEMU is gone), the vsock backend, and
// the temporary work directory. It is safe to call more than once and
// from several goroutines; QEMU's status stays available through ExitCode.
func (v *VM) Close() error {
	v.closeOnce.Do(func() { v.closeErr = v.teardown() })
	return v.closeErr
}

func (v *VM) teardown() error {
	var errs []error
	if v.stopCtx != nil {
		v.stopCtx()
	}
	if v.qmpCli != nil {
		v.qmpCli.Close()
	}
	if v.qemu != nil {
		if err := v.qemu.stop(0, syscall.SIGTERM, v.cfg.stopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if v.virtiofsd != nil {
		// virtiofsd leaves by itself when QEMU disconnects; only nudge it
		// when it does not.
		selfExit := v.cfg.stopTimeout
		if v.qemu == nil {
			selfExit = 0 // it has no QEMU to lose
		}
		if err := v.virtiofsd.stop(selfExit, syscall.SIGTERM, v.cfg.stopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if v.vsock != nil {
		v.vsockCancel()
		if err := v.vsock.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close vsock backend: %w", err))
		}
		select {
		case err := <-v.vsockDone:
			if err != nil && !errors.Is(err, context.Canceled) {
				v.cfg.log.Debug("vsock backend ended", "err", err)
			}
		case <-time.After(v.cfg.stopTimeout):
			errs = append(errs, fmt.Errorf("vsock backend did not stop within %v", v.cfg.stopTimeout))
		}
	}
	tail := tailFile(v.paths.console, 64<<10)
	v.tailMu.Lock()
	v.tail = tail
	v.tailMu.Unlock()
	v.cleanupDir()
	if len(errs) > 0 {
		return fmt.Errorf("vmm: teardown: %w", errors.Join(errs...))
	}
	return nil
}

func (v *VM) cleanupDir() {
	if v.ownDir && !v.cfg.keepWorkDir {
		os.RemoveAll(v.dir)
	}
}

// ConsoleTail is the last n bytes of the serial console, for failure
// messages. It stays available after Close (up to 64 KiB).
func (v *VM) ConsoleTail(n int) string {
	v.tailMu.Lock()
	s := v.tail
	v.tailMu.Unlock()
	if s == "" {
		s = tailFile(v.paths.console, n)
	}
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// QEMULogTail is the last n bytes of QEMU's own output (errors, warnings).
func (v *VM) QEMULogTail(n int) string { return tailFile(v.paths.qemuLog, n) }

func tailFile(path string, n int) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - int64(n)
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return ""
	}
	return string(b)
}
