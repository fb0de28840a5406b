// Package hotplug makes CPUs and memory that the host hot-plugs into the VM
// usable: it onlines CPUs and memory blocks through sysfs, either when the
// runtime asks (OnlineCPUMem, MemHotplugByProbe) or as soon as the kernel
// announces them with an "add" uevent, and it reports the guest's memory
// hot-plug facts for GetGuestDetails.
//
// Every path is taken under an injectable sysfs root and every wait uses an
// injectable clock, so the logic runs in unit tests against a fake tree.
//
// Goroutines: the package starts none of its own but one. RPCs
// (OnlineCPUMem, MemHotplugByProbe, the GetGuestDetails queries) run on the
// server's goroutines and HandleUevent on the uevent listener's, all
// concurrently; the memory sweep runs on the goroutine of a one-shot
// time.AfterFunc timer that each memory "add" uevent re-arms, so nothing
// runs at idle and nothing needs stopping at shutdown (a pending sweep
// only onlines memory).
//
// Locks: Onliner.mu serialises every read-modify-write of sysfs online
// state (a CPU pass, a memory pass, one uevent's block or CPU) so that two
// passes never online the same CPU twice or count a CPU another is
// onlining. Onliner.sweepMu only guards the timer. The two are never held
// together (a memory uevent releases mu before re-arming the sweep, and the
// sweep takes only mu), and no lock is held while OnlineCPUMem sleeps
// between retries or calls the CpusetUpdater, so the sandbox's locks are
// never taken under ours.
package hotplug

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultTimeout bounds how long OnlineCPUMem waits for CPUs to come online
// when Options.Timeout is not set (the agent's agent.hotplug_timeout default).
const DefaultTimeout = 3 * time.Second

// MemoryOnlineType is what a hot-plugged memory block is onlined as.
type MemoryOnlineType string

// Memory online types accepted by /sys/devices/system/memory/memoryN/state.
const (
	OnlineKernel  MemoryOnlineType = "online"
	OnlineMovable MemoryOnlineType = "online_movable"
)

// retryInterval is how long OnlineCPUMem waits between passes while the
// CPUs it was asked for have not all appeared and come online yet.
const retryInterval = 50 * time.Millisecond

// sweepDelay is how long after the last memory "add" uevent all memory
// blocks are checked once more: the uevent listener drops events for a
// subscriber that lags (a large DIMM adds many blocks at once), and the
// sweep onlines the blocks whose events were lost.
const sweepDelay = 200 * time.Millisecond

// maxAttrSize bounds every sysfs read: attributes are at most a page, and a
// bounded read cannot hang on a file that never ends.
const maxAttrSize = 4096

// Clock is the time source for bounded retries.
type Clock interface {
	Now() time.Time
	// Sleep waits for d, or returns ctx's error when ctx ends first.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CpusetUpdater widens the containers' cpusets after CPUs come online. The
// sandbox implements it; cpus is the guest's online CPU list in the kernel's
// list format (for example "0-3").
type CpusetUpdater interface {
	UpdateCpusets(cpus string) error
}

// Options configure an Onliner. The zero value works on the real /sys.
type Options struct {
	// SysfsRoot is where sysfs is mounted. Default "/sys".
	SysfsRoot string
	// MemoryOnline is the type memory blocks are onlined as. Default
	// OnlineKernel ("online").
	MemoryOnline MemoryOnlineType
	// OnlineCPUOnAdd onlines a CPU as soon as its "add" uevent arrives.
	OnlineCPUOnAdd bool
	// Timeout bounds how long OnlineCPUMem waits for CPUs to come online.
	// Default DefaultTimeout.
	Timeout time.Duration
	// Cpusets is told the new online CPU list after OnlineCPUMem onlined
	// CPUs; nil skips the update.
	Cpusets CpusetUpdater
	// Clock defaults to the wall clock.
	Clock Clock
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// Onliner onlines hot-plugged CPUs and memory. It is safe for concurrent
// use: uevent-driven onlining and RPCs may run at the same time.
type Onliner struct {
	sysfs    string
	memType  MemoryOnlineType
	cpuOnAdd bool
	timeout  time.Duration
	cpusets  CpusetUpdater
	clock    Clock
	log      *slog.Logger
	mu       sync.Mutex // serialises sysfs CPU and memory onlining

	sweepDelay time.Duration
	sweepMu    sync.Mutex
	sweepTimer *time.Timer
}

// New returns an Onliner. It touches nothing until used.
func New(opts Options) (*Onliner, error) {
	o := &Onliner{
		sysfs:    opts.SysfsRoot,
		memType:  opts.MemoryOnline,
		cpuOnAdd: opts.OnlineCPUOnAdd,
		timeout:  opts.Timeout,
		cpusets:  opts.Cpusets,
		clock:    opts.Clock,
		log:      opts.Log,

		sweepDelay: sweepDelay,
	}
	if o.sysfs == "" {
		o.sysfs = "/sys"
	}
	switch o.memType {
	case "":
		o.memType = OnlineKernel
	case OnlineKernel, OnlineMovable:
	default:
		return nil, fmt.Errorf("memory online type %q: want %q or %q", o.memType, OnlineKernel, OnlineMovable)
	}
	if o.timeout <= 0 {
		o.timeout = DefaultTimeout
	}
	if o.clock == nil {
		o.clock = realClock{}
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	return o, nil
}

func (o *Onliner) cpuDir() string    { return filepath.Join(o.sysfs, "devices/system/cpu") }
func (o *Onliner) memoryDir() string { return filepath.Join(o.sysfs, "devices/system/memory") }

// readAttr reads a sysfs attribute, bounded, without its trailing newline.
func readAttr(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAttrSize))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return trimAttr(string(b)), nil
}

func trimAttr(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}

// writeAttr writes value to an existing sysfs attribute in one write, as
// sysfs requires. It never creates the file.
func writeAttr(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(value))
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	if cerr != nil {
		return fmt.Errorf("close %s: %w", path, cerr)
	}
	return nil
}

// OnlineCPUMem brings the guest to nbCPUs online CPUs in total (boot CPU
// included; 0 asks for no CPU work), waiting, bounded by the timeout, until
// the kernel lists them online; then onlines every offline memory block
// unless cpuOnly; then widens the containers' cpusets when CPUs were asked
// for. CPUs already online, whoever onlined them, count toward the total, so
// the call is idempotent and agrees with uevent-driven onlining.
func (o *Onliner) OnlineCPUMem(ctx context.Context, nbCPUs uint32, cpuOnly bool) error {
	if nbCPUs > 0 {
		if err := o.onlineCPUs(ctx, int(nbCPUs)); err != nil {
			return err
		}
	}
	var errs []error
	if !cpuOnly {
		if _, err := o.onlineMemory(); err != nil {
			errs = append(errs, err)
		}
	}
	if nbCPUs > 0 && o.cpusets != nil {
		cpus, err := readAttr(filepath.Join(o.cpuDir(), "online"))
		if err != nil {
			errs = append(errs, fmt.Errorf("read online CPU list: %w", err))
		} else if err := o.cpusets.UpdateCpusets(cpus); err != nil {
			errs = append(errs, fmt.Errorf("update container cpusets to %q: %w", cpus, err))
		}
	}
	return errors.Join(errs...)
}

// OnlineAllOffline onlines every offline memory block and, when CPUs are
// onlined on "add", every offline CPU. The agent calls it at start-up, after
// subscribing to uevents, to catch what was hot-plugged before it listened.
func (o *Onliner) OnlineAllOffline() error {
	var errs []error
	blocks, err := o.onlineMemory()
	if err != nil {
		errs = append(errs, err)
	}
	if len(blocks) > 0 {
		o.log.Info("onlined memory blocks present at start-up", "blocks", blocks, "type", string(o.memType))
	}
	if o.cpuOnAdd {
		cpus, err := o.onlineOfflineCPUs()
		if err != nil {
			errs = append(errs, err)
		}
		if len(cpus) > 0 {
			o.log.Info("onlined CPUs present at start-up", "cpus", cpus)
		}
	}
	return errors.Join(errs...)
}
