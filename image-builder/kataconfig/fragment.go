// Package kataconfig installs the guest image where the Kata Containers
// runtime keeps its guest assets and writes the configuration drop-in that
// points the runtime's QEMU hypervisor at it: kernel, initrd, kernel
// parameters and the shared-filesystem settings the agent relies on.
//
// The Kata runtime (2.5 and later) reads every file of the config.d
// directory beside its resolved configuration.toml, in name order, after
// the base file, and a key set there replaces the base file's value. The
// fragment therefore names only what this guest needs to differ.
package kataconfig

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// ErrInvalid classifies inputs that cannot go into the configuration.
var ErrInvalid = errors.New("invalid kata configuration input")

// MachineType is the QEMU machine the guest kernel is built and tested
// for: its ACPI CPU, memory and PCI hot-plug (kernel-config/75-hotplug.conf).
const MachineType = "q35"

// MemorySlots is the number of pc-dimm slots for memory hot-plug; the
// agent onlines hot-added blocks from their uevents. It is Kata's own
// default, stated so that a base file with fewer slots does not limit
// hot-plug.
const MemorySlots = 10

// Options are the values the fragment carries.
type Options struct {
	Kernel, Initrd string // absolute paths as the runtime sees them (no DESTDIR)
	KernelParams   string // from KernelParams
	// VirtiofsDaemon, when set, replaces the base file's virtio_fs_daemon;
	// empty keeps the daemon the Kata installation ships, which speaks
	// that runtime's argument syntax.
	VirtiofsDaemon string
	// VirtiofsLegacy selects the argument syntax of QEMU's C virtiofsd
	// (Debian's /usr/lib/qemu/virtiofsd). Kata runtimes from 3.2 on start
	// the daemon with --shared-dir=, which the C daemon rejects; it works
	// only with older runtimes.
	VirtiofsLegacy bool
	Source         string // where the values came from, for the header comment
}

// ExtraArgs are the virtio_fs_extra_args: the Kata defaults
// (one thread, submounts announced) plus extended attributes, without
// which user.* attributes, file capabilities (setcap) and ACLs on
// container files fail with "Operation not supported".
func (o Options) ExtraArgs() []string {
	if o.VirtiofsLegacy {
		return []string{"--thread-pool-size=1", "-o", "announce_submounts", "-o", "xattr"}
	}
	return []string{"--thread-pool-size=1", "--announce-submounts", "--xattr"}
}

// runtimeOwned are the command line options the Kata runtime sets itself
// for each sandbox. The fragment's kernel_params come last on the
// runtime's command line and win, so carrying ours would override the
// runtime's choices: the console it attaches (hvc0, or ttyS0 with
// use_legacy_serial), quiet or debug from enable_debug, panic, nr_cpus
// from default_maxvcpus (a fixed one would cap vCPU hot-plug), and the
// agent's log level and debug console from the [agent.kata] section.
var runtimeOwned = map[string]bool{
	"console":                   true,
	"quiet":                     true,
	"debug":                     true,
	"panic":                     true,
	"nr_cpus":                   true,
	"agent.log":                 true,
	"agent.debug_console":       true,
	"agent.debug_console_vport": true,
}

// KernelParams turns the image's default command line
// (build/guest/cmdline) into kernel_params: the options the runtime owns
// are dropped and returned separately.
func KernelParams(cmdline string) (params string, dropped []string, err error) {
	line := strings.TrimRight(cmdline, "\n")
	if strings.TrimSpace(line) == "" {
		return "", nil, fmt.Errorf("%w: empty kernel command line", ErrInvalid)
	}
	if !utf8.ValidString(line) {
		return "", nil, fmt.Errorf("%w: kernel command line is not UTF-8", ErrInvalid)
	}
	for _, r := range line {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return "", nil, fmt.Errorf("%w: kernel command line has control character %q", ErrInvalid, r)
		}
	}
	var kept []string
	for _, f := range strings.Fields(line) {
		key, _, _ := strings.Cut(f, "=")
		if runtimeOwned[key] {
			dropped = append(dropped, f)
			continue
		}
		kept = append(kept, f)
	}
	return strings.Join(kept, " "), dropped, nil
}

// Fragment renders the drop-in.
func Fragment(o Options) ([]byte, error) {
	for name, p := range map[string]string{"kernel": o.Kernel, "initrd": o.Initrd, "virtio_fs_daemon": o.VirtiofsDaemon} {
		if p == "" && name == "virtio_fs_daemon" {
			continue
		}
		if err := checkPath(p); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if o.VirtiofsLegacy && o.VirtiofsDaemon == "" {
		return nil, fmt.Errorf("%w: the legacy virtiofsd syntax needs the daemon's path", ErrInvalid)
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Kata Containers runtime drop-in: boot the sandbox-guest kernel, initrd and agent.\n")
	if o.Source != "" {
		w("# Written by `make install` from %s; run it again rather than editing.\n", commentSafe(o.Source))
	}
	w("# The runtime reads it after its configuration.toml (config.d beside the resolved file).\n")
	w("# vsock needs no key: the runtime dials port 1024 over vhost-vsock (host module\n")
	w("# vhost_vsock), where the agent listens by default.\n")
	w("\n[hypervisor.qemu]\n")
	w("kernel = %s\n", tomlString(o.Kernel))
	w("# The guest boots from an initrd: the base file's rootfs image is unset, since\n")
	w("# the runtime refuses a configuration with both.\n")
	w("image = \"\"\n")
	w("initrd = %s\n", tomlString(o.Initrd))
	w("# The image's default command line without what the runtime sets per sandbox\n")
	w("# (console, quiet/debug, panic, nr_cpus, agent.log, agent.debug_console).\n")
	w("kernel_params = %s\n", tomlString(o.KernelParams))
	w("# The guest kernel's ACPI CPU, memory and PCI hot-plug is built for q35.\n")
	w("machine_type = %s\n", tomlString(MachineType))
	w("# pc-dimm slots for memory hot-plug; the agent onlines new memory blocks.\n")
	w("memory_slots = %d\n", MemorySlots)
	w("# Container rootfs and volumes are shared with virtio-fs (tag kataShared).\n")
	w("shared_fs = \"virtio-fs\"\n")
	if o.VirtiofsDaemon != "" {
		w("virtio_fs_daemon = %s\n", tomlString(o.VirtiofsDaemon))
	}
	w("virtio_fs_cache = \"auto\"\n")
	w("# Extended attributes on: user.* attributes, file capabilities and ACLs on\n")
	w("# container files need them.\n")
	args := o.ExtraArgs()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = tomlString(a)
	}
	w("virtio_fs_extra_args = [%s]\n", strings.Join(quoted, ", "))
	return []byte(b.String()), nil
}

// checkPath accepts a clean absolute path the runtime can resolve.
func checkPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty path", ErrInvalid)
	case !filepath.IsAbs(p):
		return fmt.Errorf("%w: path %q is not absolute", ErrInvalid, p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("%w: path %q is not clean", ErrInvalid, p)
	case !utf8.ValidString(p):
		return fmt.Errorf("%w: path %q is not UTF-8", ErrInvalid, p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: path %q has a control character", ErrInvalid, p)
		}
	}
	return nil
}

// tomlString quotes s as a TOML basic string. Go's %q is not TOML (its
// \x escapes are not valid there), so the escapes are TOML's own.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// commentSafe keeps a value on its comment line.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
