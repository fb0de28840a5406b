package initsys

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"golang.org/x/sys/unix"
)

// Sys is every system call PID-1 setup makes. Real implements it; tests
// record the calls instead.
type Sys interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
	// FSType returns the filesystem magic of path (statfs f_type).
	FSType(path string) (int64, error)
	MkdirAll(path string, perm os.FileMode) error
	Symlink(oldname, newname string) error
	Remove(path string) error
	Lstat(path string) (os.FileInfo, error)
	ReadFile(path string) ([]byte, error)
	WriteFile(path string, data []byte) error
	Chdir(dir string) error
	Chroot(dir string) error
	// Exec replaces the process image; it returns only on failure.
	Exec(path string, argv, env []string) error
	Sethostname(name string) error
	Setsid() error
	LinkUp(name string) error
	Sync()
	PowerOff() error
}

// EnvNewRoot marks the second start of PID 1 (a re-exec, see
// Options.Reexec), so that it neither moves the root nor re-executes
// again; it is removed from the environment at once so that no child
// inherits it.
const EnvNewRoot = "SANDBOX_GUEST_NEWROOT"

// newRootDir is where the bind of the initramfs root is built.
const newRootDir = "/newroot"

// Options configure Setup.
type Options struct {
	// IsInit is true when the agent runs as PID 1.
	IsInit bool
	// UnifiedCgroups mounts cgroup2 at /sys/fs/cgroup; false mounts one
	// cgroup v1 hierarchy per controller.
	UnifiedCgroups bool
	// Hostname, when set, is applied at start as PID 1 (CreateSandbox sets
	// the pod's later with SetHostname).
	Hostname string
	Log      *slog.Logger
	// FlushLog, when set, runs right before the process image is replaced
	// (re-exec into the new root) and before power-off, so that the log
	// lines still queued for the console or the host get out.
	FlushLog func()
	// Sys defaults to Real{}.
	Sys Sys
	// Getenv, Environ and Args default to the process's own.
	Getenv  func(string) string
	Environ func() []string
	Args    []string
	// ReexecEnv is set in the environment of the re-executed agent,
	// replacing variables of the same name (NAME=value entries). Settings
	// that Go reads only at process start, such as GODEBUG's fips140,
	// take effect this way.
	ReexecEnv []string
	// Reexec asks for a re-exec on the first start (after the root move,
	// if any), so that ReexecEnv takes effect. Without it PID 1 runs on in
	// the same process.
	Reexec bool
}

func (o *Options) flushLog() {
	if o.FlushLog != nil {
		o.FlushLog()
	}
}

func (o *Options) defaults() {
	if o.Sys == nil {
		o.Sys = Real{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Environ == nil {
		o.Environ = os.Environ
	}
	if o.Args == nil {
		o.Args = os.Args
	}
}

// Filesystem magics (statfs f_type) used to tell what is mounted where
// before /proc is available.
const (
	procMagic  = 0x9fa0
	ramfsMagic = 0x858458f6
	tmpfsMagic = 0x01021994
)

// Setup prepares the system. As PID 1 it mounts the kernel filesystems,
// moves to a root that allows pivot_root, re-executes the agent when asked
// (Reexec: on success the first call does not return), makes itself a session leader
// and brings up loopback; in every mode it sets the agent's OOM score.
// Steps that fail are reported together; only failures that leave the
// system unusable for containers abort the rest.
func Setup(o Options) error {
	o.defaults()
	s, log := o.Sys, o.Log
	var errs []error
	if o.IsInit {
		if err := mountBase(s); err != nil {
			return fmt.Errorf("PID 1 setup: %w", err)
		}
		if o.Getenv(EnvNewRoot) == "" {
			need, err := rootNeedsMove(s)
			if err != nil {
				return fmt.Errorf("PID 1 setup: %w", err)
			}
			if need {
				if err := moveRoot(s, o.Log); err != nil {
					return fmt.Errorf("PID 1 setup: %w", err)
				}
			}
			if o.Reexec {
				return fmt.Errorf("PID 1 setup: %w", reexec(s, o))
			}
		} else {
			_ = os.Unsetenv(EnvNewRoot)
		}
		if err := mountRest(s, o.UnifiedCgroups, log); err != nil {
			return fmt.Errorf("PID 1 setup: %w", err)
		}
		if err := s.Setsid(); err != nil && !errors.Is(err, unix.EPERM) {
			errs = append(errs, fmt.Errorf("setsid: %w", err))
		}
		if err := s.LinkUp("lo"); err != nil {
			errs = append(errs, fmt.Errorf("bring up lo: %w", err))
		}
		if o.Hostname != "" {
			if err := SetHostname(s, o.Hostname); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := s.WriteFile("/proc/self/oom_score_adj", []byte("-997")); err != nil {
		errs = append(errs, fmt.Errorf("set oom_score_adj: %w", err))
	}
	return errors.Join(errs...)
}

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	mode                   os.FileMode
}

// mounted reports whether target is a mount point; before /proc is up it
// can only answer for /proc itself (by magic).
func mounted(s Sys, target string) (bool, error) {
	if target == "/proc" {
		t, err := s.FSType("/proc")
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			return false, err
		}
		return t == procMagic, nil
	}
	info, err := readMountinfo(s)
	if err != nil {
		return false, err
	}
	for _, m := range info {
		if m.Mountpoint == target {
			return true, nil
		}
	}
	return false, nil
}

func readMountinfo(s Sys) ([]*mountinfo.Info, error) {
	b, err := s.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return mountinfo.GetMountsFromReader(bytes.NewReader(b), nil)
}

func mountAll(s Sys, specs []mountSpec) error {
	for _, m := range specs {
		ok, err := mounted(s, m.target)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if err := s.MkdirAll(m.target, m.mode); err != nil {
			return fmt.Errorf("create %s: %w", m.target, err)
		}
		if err := s.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

const nosuidNodevNoexec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// MountKernelFilesystems mounts /proc, /sys and /dev if they are not
// mounted yet. PID 1 calls it before reading /proc/cmdline; Setup calls it
// again harmlessly. A nil s uses Real.
func MountKernelFilesystems(s Sys) error {
	if s == nil {
		s = Real{}
	}
	return mountBase(s)
}

// mountBase mounts what the root move and everything after need.
func mountBase(s Sys) error {
	return mountAll(s, []mountSpec{
		{"proc", "/proc", "proc", nosuidNodevNoexec, "", 0o555},
		{"sysfs", "/sys", "sysfs", nosuidNodevNoexec, "", 0o555},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", 0o755},
	})
}

func mountRest(s Sys, unified bool, log *slog.Logger) error {
	err := mountAll(s, []mountSpec{
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", 0o755},
		{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", 0o1777},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", 0o755},
	})
	if err != nil {
		return err
	}
	// With a private devpts instance, /dev/ptmx must lead to it.
	if fi, err := s.Lstat("/dev/ptmx"); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		if err := s.Remove("/dev/ptmx"); err != nil {
			return fmt.Errorf("replace /dev/ptmx: %w", err)
		}
	}
	if _, err := s.Lstat("/dev/ptmx"); errors.Is(err, fs.ErrNotExist) {
		if err := s.Symlink("pts/ptmx", "/dev/ptmx"); err != nil {
			return fmt.Errorf("link /dev/ptmx: %w", err)
		}
	}
	return mountCgroups(s, unified, log)
}

const cgroupRoot = "/sys/fs/cgroup"

func mountCgroups(s Sys, unified bool, log *slog.Logger) error {
	if unified {
		return mountAll(s, []mountSpec{{"cgroup2", cgroupRoot, "cgroup2", nosuidNodevNoexec, "", 0o755}})
	}
	if err := mountAll(s, []mountSpec{{"tmpfs", cgroupRoot, "tmpfs", nosuidNodevNoexec, "mode=0755", 0o755}}); err != nil {
		return err
	}
	b, err := s.ReadFile("/proc/cgroups")
	if err != nil {
		return fmt.Errorf("cgroup v1 requested: %w", err)
	}
	for _, h := range V1Hierarchies(b) {
		dir := filepath.Join(cgroupRoot, h.Name)
		if err := mountAll(s, []mountSpec{{"cgroup", dir, "cgroup", nosuidNodevNoexec, h.Name, 0o755}}); err != nil {
			return err
		}
		for _, l := range h.Links {
			if err := s.Symlink(h.Name, filepath.Join(cgroupRoot, l)); err != nil && !errors.Is(err, fs.ErrExist) {
				log.Warn("cgroup v1 link", "link", l, "error", err)
			}
		}
	}
	return nil
}

// V1Hierarchy is one cgroup v1 mount: its controllers joined by commas,
// and the per-controller names linked to it.
type V1Hierarchy struct {
	Name  string
	Links []string
}

// V1Hierarchies reads /proc/cgroups and returns one hierarchy per enabled
// controller, with cpu+cpuacct and net_cls+net_prio co-mounted as systemd
// and runc expect.
func V1Hierarchies(procCgroups []byte) []V1Hierarchy {
	enabled := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(procCgroups))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 4 && f[3] == "1" && validControllerName(f[0]) {
			enabled[f[0]] = true
		}
	}
	var out []V1Hierarchy
	for _, pair := range [][2]string{{"cpu", "cpuacct"}, {"net_cls", "net_prio"}} {
		if enabled[pair[0]] && enabled[pair[1]] {
			out = append(out, V1Hierarchy{Name: pair[0] + "," + pair[1], Links: []string{pair[0], pair[1]}})
			delete(enabled, pair[0])
			delete(enabled, pair[1])
		}
	}
	for name := range enabled {
		out = append(out, V1Hierarchy{Name: name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func validControllerName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// rootNeedsMove reports whether / is the initramfs (rootfs), which
// pivot_root cannot leave.
func rootNeedsMove(s Sys) (bool, error) {
	info, err := readMountinfo(s)
	if err != nil {
		return false, err
	}
	for _, m := range info {
		if m.Mountpoint == "/" {
			return m.FSType == "rootfs", nil
		}
	}
	// No entry for / at all: only the initramfs looks like that.
	return true, nil
}

// moveRoot binds the initramfs root onto /newroot (a mount with a parent),
// moves every top-level mount under it (the kernel filesystems, and the
// image's squashfs mount the agent runs from, when the image has one) and
// makes it the root. No re-exec is needed: every thread of the process
// shares one root (Go creates its threads with CLONE_FS), and
// /proc/self/exe, which libcontainer starts container inits from, is the
// same file in the bind. Skipping a second Go start saves about 0.1 s of
// boot under TCG.
func moveRoot(s Sys, log *slog.Logger) error {
	if err := s.MkdirAll(newRootDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", newRootDir, err)
	}
	if err := s.Mount("/", newRootDir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind / on %s: %w", newRootDir, err)
	}
	// Read the table once: /proc itself moves with the others.
	info, err := readMountinfo(s)
	if err != nil {
		return err
	}
	for _, d := range topLevelMounts(info) {
		dst := newRootDir + d
		if err := s.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dst, err)
		}
		if err := s.Mount(d, dst, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s to %s: %w", d, dst, err)
		}
	}
	if err := s.Chdir(newRootDir); err != nil {
		return fmt.Errorf("chdir %s: %w", newRootDir, err)
	}
	if err := s.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", newRootDir, err)
	}
	if err := s.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := s.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	log.Info("moved to a pivot_root-capable root")
	return nil
}

// topLevelMounts returns the distinct mount points directly under /, but
// /newroot, sorted: the mounts that must move with the root (submounts
// move with their parent).
func topLevelMounts(info []*mountinfo.Info) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range info {
		p := m.Mountpoint
		if p == "/" || p == newRootDir || seen[p] || filepath.Dir(p) != "/" {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// reexec starts the agent again with ReexecEnv applied, marked so that it
// does not loop. Queued log lines go out first: the process image is
// replaced.
func reexec(s Sys, o Options) error {
	env := mergeEnv(o.Environ(), append(slices.Clone(o.ReexecEnv), EnvNewRoot+"=1"))
	o.flushLog()
	return fmt.Errorf("re-exec /proc/self/exe: %w", s.Exec("/proc/self/exe", o.Args, env))
}

// mergeEnv returns env with every NAME=value of set replacing the entries
// of that name (or added at the end).
func mergeEnv(env, set []string) []string {
	out := make([]string, 0, len(env)+len(set))
	replaced := map[string]bool{}
	for _, kv := range set {
		name, _, _ := strings.Cut(kv, "=")
		replaced[name] = true
	}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !replaced[name] {
			out = append(out, kv)
		}
	}
	return append(out, set...)
}

// SetHostname validates and sets the hostname (CreateSandbox's hostname,
// at most 64 bytes as the kernel allows).
func SetHostname(s Sys, name string) error {
	if len(name) == 0 || len(name) > 64 {
		return fmt.Errorf("hostname %q: length must be 1..64", hostinput.Clip(name))
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("hostname %q: character %q not allowed", hostinput.Clip(name), c)
		}
	}
	if s == nil {
		s = Real{}
	}
	if err := s.Sethostname(name); err != nil {
		return fmt.Errorf("set hostname %q: %w", name, err)
	}
	return nil
}
