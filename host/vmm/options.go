package vmm

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults for a test VM: enough for an agent and a few small containers,
// with room to hot-plug memory and CPUs.
const (
	DefaultMemoryMiB    = 512
	DefaultMaxMemoryMiB = 2048
	DefaultSlots        = 4
	DefaultMaxCPUs      = 4
	DefaultGuestCID     = 3
	DefaultTag          = "kataShared"
	DefaultQEMU         = "qemu-system-x86_64"
	DefaultVirtiofsd    = "/usr/lib/qemu/virtiofsd"
)

type config struct {
	qemu      string
	virtiofsd string

	kernel  string
	initrd  string
	cmdline string

	memMiB    uint64
	maxMemMiB uint64
	slots     int
	cpus      int
	maxCPUs   int
	kvm       bool

	sharedDir string
	tag       string
	vfsdArgs  []string
	noXattr   bool // WithXattr(false): virtiofsd without extended attributes

	vsock    VsockListener
	vsockSet bool // WithVsock given; otherwise the default backend
	guestCID uint64

	workDir     string
	keepWorkDir bool
	consoleLog  string
	extraArgs   []string

	startTimeout time.Duration
	stopTimeout  time.Duration
	log          *slog.Logger
}

func defaultConfig() config {
	return config{
		qemu:         DefaultQEMU,
		virtiofsd:    DefaultVirtiofsd,
		memMiB:       DefaultMemoryMiB,
		maxMemMiB:    DefaultMaxMemoryMiB,
		slots:        DefaultSlots,
		cpus:         1,
		maxCPUs:      DefaultMaxCPUs,
		tag:          DefaultTag,
		guestCID:     DefaultGuestCID,
		startTimeout: 30 * time.Second,
		stopTimeout:  5 * time.Second,
		log:          slog.New(slog.DiscardHandler),
	}
}

// Option configures a VM.
type Option func(*config) error

// WithKernel sets the kernel image (bzImage) to boot.
func WithKernel(path string) Option {
	return func(c *config) error { c.kernel = path; return nil }
}

// WithInitrd sets the initramfs.
func WithInitrd(path string) Option {
	return func(c *config) error { c.initrd = path; return nil }
}

// WithCmdline sets the kernel command line.
func WithCmdline(cmdline string) Option {
	return func(c *config) error { c.cmdline = cmdline; return nil }
}

// WithImageDir boots the image in dir as written by the image builder:
// vmlinuz, initrd.img and cmdline (one line; optional).
func WithImageDir(dir string) Option {
	return func(c *config) error {
		c.kernel = filepath.Join(dir, "vmlinuz")
		c.initrd = filepath.Join(dir, "initrd.img")
		b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		switch {
		case err == nil:
			c.cmdline = strings.TrimSpace(string(b))
		case os.IsNotExist(err):
		default:
			return fmt.Errorf("read image command line: %w", err)
		}
		return nil
	}
}

// WithAppend adds arguments to the kernel command line.
func WithAppend(args ...string) Option {
	return func(c *config) error {
		c.cmdline = strings.TrimSpace(c.cmdline + " " + strings.Join(args, " "))
		return nil
	}
}

// WithMemory sets the boot memory in MiB.
func WithMemory(mib uint64) Option {
	return func(c *config) error {
		if mib == 0 {
			return fmt.Errorf("memory size must be positive")
		}
		c.memMiB = mib
		return nil
	}
}

// WithMaxMemory sets the hot-plug ceiling in MiB and the number of DIMM
// slots; slots 0 disables memory hot-plug.
func WithMaxMemory(mib uint64, slots int) Option {
	return func(c *config) error {
		if slots < 0 || slots > 256 {
			return fmt.Errorf("memory slots %d out of range 0..256", slots)
		}
		c.maxMemMiB, c.slots = mib, slots
		return nil
	}
}

// WithCPUs sets the boot vCPUs and the hot-plug ceiling.
func WithCPUs(boot, max int) Option {
	return func(c *config) error {
		if boot < 1 || max < boot {
			return fmt.Errorf("cpus %d, maxcpus %d: need 1 <= cpus <= maxcpus", boot, max)
		}
		c.cpus, c.maxCPUs = boot, max
		return nil
	}
}

// WithKVM selects KVM acceleration instead of TCG. (On the development
// machines /dev/kvm exists but hangs the guest, hence TCG by default.)
func WithKVM(on bool) Option {
	return func(c *config) error { c.kvm = on; return nil }
}

// WithSharedDir shares dir with the guest over virtio-fs, served by
// virtiofsd, under tag (DefaultTag when empty).
func WithSharedDir(dir, tag string) Option {
	return func(c *config) error {
		if tag == "" {
			tag = DefaultTag
		}
		c.sharedDir, c.tag = dir, tag
		return nil
	}
}

// WithVirtiofsdArgs appends raw virtiofsd arguments (for example
// "-o", "sandbox=chroot" where namespaces are not available).
func WithVirtiofsdArgs(args ...string) Option {
	return func(c *config) error { c.vfsdArgs = append(c.vfsdArgs, args...); return nil }
}

// WithXattr turns extended attributes on the shared directory on (the
// default) or off. With them, user.* attributes, file capabilities
// (security.capability, setcap) and POSIX ACLs work on container files, as
// images expect; without them virtiofsd answers every xattr call with
// EOPNOTSUPP.
func WithXattr(on bool) Option {
	return func(c *config) error { c.noXattr = !on; return nil }
}

// WithVsock sets how the vhost-user-vsock backend is started; nil leaves
// the VM without a vsock device.
func WithVsock(l VsockListener) Option {
	return func(c *config) error { c.vsock, c.vsockSet = l, true; return nil }
}

// WithGuestCID sets the guest's vsock context id.
func WithGuestCID(cid uint64) Option {
	return func(c *config) error {
		if cid < 3 || cid >= 0xffffffff {
			return fmt.Errorf("guest cid %d: must be at least 3 and below 2^32-1", cid)
		}
		c.guestCID = cid
		return nil
	}
}

// WithWorkDir puts sockets and logs in dir (created if missing) instead of
// a fresh temporary directory. A given directory is never removed.
// Unix socket paths are limited to 107 bytes, so keep it short.
func WithWorkDir(dir string) Option {
	return func(c *config) error { c.workDir = dir; return nil }
}

// WithKeepWorkDir keeps a temporary work directory (logs) after Close.
func WithKeepWorkDir() Option {
	return func(c *config) error { c.keepWorkDir = true; return nil }
}

// WithConsoleLog writes the serial console to path instead of
// console.log in the work directory.
func WithConsoleLog(path string) Option {
	return func(c *config) error { c.consoleLog = path; return nil }
}

// WithQEMU sets the QEMU binary.
func WithQEMU(path string) Option {
	return func(c *config) error { c.qemu = path; return nil }
}

// WithVirtiofsd sets the virtiofsd binary.
func WithVirtiofsd(path string) Option {
	return func(c *config) error { c.virtiofsd = path; return nil }
}

// WithExtraArgs appends raw QEMU arguments.
func WithExtraArgs(args ...string) Option {
	return func(c *config) error { c.extraArgs = append(c.extraArgs, args...); return nil }
}

// WithStartTimeout bounds how long Start waits for each helper's socket
// and for QEMU's QMP socket.
func WithStartTimeout(d time.Duration) Option {
	return func(c *config) error { c.startTimeout = d; return nil }
}

// WithStopTimeout bounds each graceful step of teardown before processes
// are killed.
func WithStopTimeout(d time.Duration) Option {
	return func(c *config) error { c.stopTimeout = d; return nil }
}

// WithLogger logs lifecycle steps to l.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error { c.log = l; return nil }
}

// WithPCIeRootPort adds a pcie-root-port named id at slot (hex 01..1e) of
// the q35 root bus, for devices hot-plugged later with bus=id: the root
// bus itself takes no native PCIe hot-plug. A device plugged into it sits
// at PCI path "<slot>/00" as the Kata runtime writes it.
func WithPCIeRootPort(id string, slot uint8) Option {
	return func(c *config) error {
		if id == "" || strings.ContainsAny(id, ",= ") {
			return fmt.Errorf("root port id %q must be non-empty without ',', '=' or spaces", id)
		}
		// 00 is the host bridge and 1f the ICH9 LPC/SATA/SMBus functions.
		if slot < 1 || slot > 0x1e {
			return fmt.Errorf("root port slot %#x out of range 0x01..0x1e", slot)
		}
		c.extraArgs = append(c.extraArgs, "-device",
			fmt.Sprintf("pcie-root-port,id=%s,bus=pcie.0,chassis=%d,addr=%#x", id, slot, slot))
		return nil
	}
}
