package kataconfig

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
)

// ErrNotFound classifies a missing input (the image not built) or a
// configured file that does not exist.
var ErrNotFound = errors.New("not found")

// Layout places the installed files, following the Kata runtime's own
// Makefile: guest assets in PREFIX/share/kata-containers (named in its
// style, vmlinuz-<variant>.container and kata-containers-initrd-<variant>.img,
// beside and not over the runtime's own), the configuration in
// PREFIX/share/defaults/kata-containers; an operator who configures Kata
// from /etc/kata-containers points ConfigDir there.
type Layout struct {
	Prefix    string // e.g. /usr
	ConfigDir string // the directory of Kata's configuration.toml; default Prefix/share/defaults/kata-containers
	Variant   string // asset name part; default sandbox-guest
}

func (l Layout) variant() string {
	if l.Variant == "" {
		return "sandbox-guest"
	}
	return l.Variant
}

// KernelPath is where the kernel goes.
func (l Layout) KernelPath() string {
	return filepath.Join(l.Prefix, "share", "kata-containers", "vmlinuz-"+l.variant()+".container")
}

// InitrdPath is where the initrd goes.
func (l Layout) InitrdPath() string {
	return filepath.Join(l.Prefix, "share", "kata-containers", "kata-containers-initrd-"+l.variant()+".img")
}

// FragmentPath is the drop-in. 50-89 is the range Kata's documentation
// leaves to operators (kata-deploy uses 10-, 20-, 30- and 50- for its own).
func (l Layout) FragmentPath() string {
	dir := l.ConfigDir
	if dir == "" {
		dir = filepath.Join(l.Prefix, "share", "defaults", "kata-containers")
	}
	return filepath.Join(dir, "config.d", "50-"+l.variant()+".toml")
}

// AgentctlPath is where the host client goes.
func (l Layout) AgentctlPath() string {
	return filepath.Join(l.Prefix, "bin", "agentctl")
}

func (l Layout) check() error {
	if err := checkPath(l.Prefix); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	if l.ConfigDir != "" {
		if err := checkPath(l.ConfigDir); err != nil {
			return fmt.Errorf("config dir: %w", err)
		}
	}
	if v := l.variant(); strings.ContainsAny(v, "/\\ \t\n") || v == "." || v == ".." {
		return fmt.Errorf("%w: variant %q must be a plain name", ErrInvalid, v)
	}
	return nil
}

// InstallOptions say what to install where.
type InstallOptions struct {
	ImageDir string // build/guest: vmlinuz, initrd.img, cmdline
	DestDir  string // staging root (DESTDIR); "" installs into /
	Layout   Layout
	Agentctl string // the agentctl binary; "" installs none
	// VirtiofsDaemon and VirtiofsLegacy: see Options.
	VirtiofsDaemon string
	VirtiofsLegacy bool
}

// Installed lists what Install wrote, as paths the runtime sees.
type Installed struct {
	Kernel, Initrd, Fragment, Agentctl string
	Dropped                            []string // command line options left to the runtime
}

// Install copies the kernel, the initrd and agentctl under DestDir and
// writes the drop-in naming them.
func Install(o InstallOptions) (Installed, error) {
	var in Installed
	if err := o.Layout.check(); err != nil {
		return in, err
	}
	src := map[string]string{}
	var missing []string
	for _, n := range []string{"vmlinuz", "initrd.img", "cmdline"} {
		p := filepath.Join(o.ImageDir, n)
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
			missing = append(missing, n)
		}
		src[n] = p
	}
	if len(missing) > 0 {
		return in, fmt.Errorf("guest image incomplete in %s (missing or empty: %s); run make image first: %w",
			o.ImageDir, strings.Join(missing, ", "), ErrNotFound)
	}
	cmdline, err := os.ReadFile(src["cmdline"])
	if err != nil {
		return in, fmt.Errorf("read %s: %w", src["cmdline"], err)
	}
	params, dropped, err := KernelParams(string(cmdline))
	if err != nil {
		return in, fmt.Errorf("%s: %w", src["cmdline"], err)
	}
	l := o.Layout
	frag, err := Fragment(Options{Kernel: l.KernelPath(), Initrd: l.InitrdPath(), KernelParams: params,
		VirtiofsDaemon: o.VirtiofsDaemon, VirtiofsLegacy: o.VirtiofsLegacy, Source: o.ImageDir})
	if err != nil {
		return in, err
	}
	root := o.DestDir
	if root == "" {
		root = "/"
	}
	if err := copyFile(src["vmlinuz"], filepath.Join(root, l.KernelPath()), 0o644); err != nil {
		return in, err
	}
	if err := copyFile(src["initrd.img"], filepath.Join(root, l.InitrdPath()), 0o644); err != nil {
		return in, err
	}
	if o.Agentctl != "" {
		if err := copyFile(o.Agentctl, filepath.Join(root, l.AgentctlPath()), 0o755); err != nil {
			return in, err
		}
		in.Agentctl = l.AgentctlPath()
	}
	// The runtime parses every file in config.d, so the fragment's
	// temporary file is made beside that directory, not in it.
	if err := writeFile(filepath.Join(root, l.FragmentPath()), frag, 0o644); err != nil {
		return in, err
	}
	in.Kernel, in.Initrd, in.Fragment, in.Dropped = l.KernelPath(), l.InitrdPath(), l.FragmentPath(), dropped
	return in, nil
}

// QEMU holds the [hypervisor.qemu] keys the fragment sets, named and typed
// as in the Kata runtime's configuration (src/runtime/pkg/katautils).
type QEMU struct {
	Kernel            string   `toml:"kernel"`
	Image             string   `toml:"image"`
	Initrd            string   `toml:"initrd"`
	KernelParams      string   `toml:"kernel_params"`
	MachineType       string   `toml:"machine_type"`
	MemSlots          uint32   `toml:"memory_slots"`
	SharedFS          string   `toml:"shared_fs"`
	VirtioFSDaemon    string   `toml:"virtio_fs_daemon"`
	VirtioFSCache     string   `toml:"virtio_fs_cache"`
	VirtioFSExtraArgs []string `toml:"virtio_fs_extra_args"`
}

// Verify parses an installed fragment (path as the runtime sees it, under
// root) as the runtime does, with BurntSushi's TOML decoder, refuses keys
// it does not know, and checks that the kernel and initrd it names exist
// under root as non-empty regular files.
func Verify(root, fragment string) (QEMU, error) {
	var conf struct {
		Hypervisor map[string]QEMU `toml:"hypervisor"`
	}
	path := filepath.Join(root, fragment)
	md, err := toml.DecodeFile(path, &conf)
	if err != nil {
		return QEMU{}, fmt.Errorf("parse %s: %w", path, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		return QEMU{}, fmt.Errorf("%s: %w: unknown keys %v", path, ErrInvalid, u)
	}
	q, ok := conf.Hypervisor["qemu"]
	if !ok || len(conf.Hypervisor) != 1 {
		return q, fmt.Errorf("%s: %w: want exactly a [hypervisor.qemu] table", path, ErrInvalid)
	}
	if q.Image != "" || q.SharedFS != "virtio-fs" {
		return q, fmt.Errorf("%s: %w: image %q, shared_fs %q; want none and virtio-fs", path, ErrInvalid, q.Image, q.SharedFS)
	}
	for name, p := range map[string]string{"kernel": q.Kernel, "initrd": q.Initrd} {
		if !filepath.IsAbs(p) {
			return q, fmt.Errorf("%s: %w: %s %q is not absolute", path, ErrInvalid, name, p)
		}
		st, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			return q, fmt.Errorf("%s: %s %s: %w", path, name, p, ErrNotFound)
		}
		if !st.Mode().IsRegular() || st.Size() == 0 {
			return q, fmt.Errorf("%s: %w: %s %s is not a non-empty file", path, ErrInvalid, name, p)
		}
	}
	return q, nil
}

// copyFile installs src at dst with mode, through a temporary file so that
// a runtime reading dst never sees half a kernel.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install %s: %w", src, err)
	}
	defer in.Close()
	return writeAtomic(dst, filepath.Dir(dst), mode, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

func writeFile(dst string, data []byte, mode os.FileMode) error {
	return writeAtomic(dst, filepath.Dir(filepath.Dir(dst)), mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeAtomic writes dst through a temporary file in tmpDir (on the same
// file system) renamed into place.
func writeAtomic(dst, tmpDir string, mode os.FileMode, fill func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	f, err := os.CreateTemp(tmpDir, "."+filepath.Base(dst)+".")
	if err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename this finds nothing
	if err := fill(f); err != nil {
		f.Close()
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
