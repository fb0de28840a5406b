package initsys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// fakeSys records what Setup does to a pretend system.
type fakeSys struct {
	calls   []string
	mounts  []fakeMount // in mount order
	files   map[string][]byte
	links   map[string]string
	dirs    map[string]bool
	execErr error
	failOn  map[string]error // call prefix -> error
	execEnv []string         // environment of the last Exec
	cwd     string
}

type fakeMount struct{ point, fstype string }

var errExec = errors.New("exec reached")

func newFakeSys(rootFSType string) *fakeSys {
	f := &fakeSys{files: map[string][]byte{}, links: map[string]string{}, dirs: map[string]bool{}, execErr: errExec, failOn: map[string]error{}}
	f.mounts = []fakeMount{{"/", rootFSType}}
	return f
}

func (f *fakeSys) rec(format string, args ...any) error {
	c := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, c)
	for p, err := range f.failOn {
		if strings.HasPrefix(c, p) {
			return err
		}
	}
	return nil
}

func (f *fakeSys) isMounted(p string) bool {
	for _, m := range f.mounts {
		if m.point == p {
			return true
		}
	}
	return false
}

func (f *fakeSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	if err := f.rec("mount %s %s %s %#x %s", source, target, fstype, flags, data); err != nil {
		return err
	}
	switch {
	case flags&unix.MS_MOVE != 0 && source == "." && target == "/":
		// The mount at the working directory becomes the root; what is
		// outside it drops out of this process's mount table.
		var kept []fakeMount
		for _, m := range f.mounts {
			switch {
			case m.point == f.cwd:
				kept = append(kept, fakeMount{"/", m.fstype})
			case strings.HasPrefix(m.point, f.cwd+"/"):
				kept = append(kept, fakeMount{strings.TrimPrefix(m.point, f.cwd), m.fstype})
			}
		}
		f.mounts = kept
	case flags&unix.MS_MOVE != 0:
		for i := range f.mounts {
			if f.mounts[i].point == source {
				f.mounts[i].point = target
			}
		}
	case flags&unix.MS_BIND != 0:
		f.mounts = append(f.mounts, fakeMount{target, "bind"})
	default:
		f.mounts = append(f.mounts, fakeMount{target, fstype})
	}
	return nil
}

func (f *fakeSys) Unmount(target string, flags int) error {
	return f.rec("umount %s", target)
}

func (f *fakeSys) FSType(path string) (int64, error) {
	if path == "/proc" && f.isMounted("/proc") {
		return procMagic, nil
	}
	return ramfsMagic, nil
}

func (f *fakeSys) MkdirAll(path string, perm os.FileMode) error { f.dirs[path] = true; return nil }
func (f *fakeSys) Symlink(o, n string) error {
	if err := f.rec("symlink %s %s", o, n); err != nil {
		return err
	}
	f.links[n] = o
	return nil
}
func (f *fakeSys) Remove(path string) error {
	delete(f.files, path)
	return f.rec("remove %s", path)
}

type fakeInfo struct {
	fs.FileInfo
	mode fs.FileMode
}

func (i fakeInfo) Mode() fs.FileMode { return i.mode }

func (f *fakeSys) Lstat(path string) (os.FileInfo, error) {
	if _, ok := f.links[path]; ok {
		return fakeInfo{mode: fs.ModeSymlink}, nil
	}
	if _, ok := f.files[path]; ok {
		return fakeInfo{mode: fs.ModeCharDevice}, nil
	}
	return nil, fs.ErrNotExist
}

func (f *fakeSys) ReadFile(path string) ([]byte, error) {
	if path == "/proc/self/mountinfo" {
		if !f.isMounted("/proc") {
			return nil, fs.ErrNotExist
		}
		var b strings.Builder
		for i, m := range f.mounts {
			fmt.Fprintf(&b, "%d 1 0:%d / %s rw - %s %s rw\n", i+1, i+1, m.point, m.fstype, m.fstype)
		}
		return []byte(b.String()), nil
	}
	if d, ok := f.files[path]; ok {
		return d, nil
	}
	return nil, fs.ErrNotExist
}

func (f *fakeSys) WriteFile(path string, data []byte) error {
	f.files[path] = data
	return f.rec("write %s %s", path, data)
}
func (f *fakeSys) Chdir(dir string) error  { f.cwd = dir; return f.rec("chdir %s", dir) }
func (f *fakeSys) Chroot(dir string) error { return f.rec("chroot %s", dir) }
func (f *fakeSys) Exec(path string, argv, env []string) error {
	f.execEnv = env
	f.rec("exec %s %s env-marker=%v", path, strings.Join(argv, " "), slices.Contains(env, EnvNewRoot+"=1"))
	return f.execErr
}
func (f *fakeSys) Sethostname(name string) error { return f.rec("hostname %s", name) }
func (f *fakeSys) Setsid() error                 { return f.rec("setsid") }
func (f *fakeSys) LinkUp(name string) error      { return f.rec("linkup %s", name) }
func (f *fakeSys) Sync()                         { f.rec("sync") }
func (f *fakeSys) PowerOff() error               { return f.rec("poweroff") }

func (f *fakeSys) has(t *testing.T, call string) {
	t.Helper()
	if !slices.Contains(f.calls, call) {
		t.Fatalf("missing call %q in:\n%s", call, strings.Join(f.calls, "\n"))
	}
}

func (f *fakeSys) hasPrefix(prefix string) bool {
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The first start from the initramfs moves the root and goes on in the
// same process: no second Go start unless a re-exec is asked for.
func TestSetupFirstStartMovesRootWithoutReexec(t *testing.T) {
	f := newFakeSys("rootfs")
	f.files["/dev/ptmx"] = nil
	err := Setup(Options{IsInit: true, UnifiedCgroups: true, Sys: f, Log: quietLog(),
		Getenv: env(nil), Environ: func() []string { return []string{"PATH=/bin"} }, Args: []string{"/init"},
		FlushLog: func() { f.rec("flush log") }})
	if err != nil {
		t.Fatal(err)
	}
	move := rootMoveCalls()
	if len(f.calls) < len(move) || !slices.Equal(f.calls[:len(move)], move) {
		t.Fatalf("calls:\n%s\nwant first:\n%s", strings.Join(f.calls, "\n"), strings.Join(move, "\n"))
	}
	if f.hasPrefix("exec") || f.hasPrefix("flush log") {
		t.Fatalf("re-executed without being asked:\n%s", strings.Join(f.calls, "\n"))
	}
	// The rest of the set-up runs in the moved root.
	f.has(t, fmt.Sprintf("mount tmpfs /run tmpfs %#x mode=0755", unix.MS_NOSUID|unix.MS_NODEV))
	f.has(t, fmt.Sprintf("mount cgroup2 /sys/fs/cgroup cgroup2 %#x ", nosuidNodevNoexec))
	f.has(t, "setsid")
	f.has(t, "linkup lo")
}

// With Reexec the move comes first, then the re-exec, marked so that it
// does not loop, after the queued log lines got out.
func TestSetupFirstStartMovesRootAndReexecs(t *testing.T) {
	f := newFakeSys("rootfs")
	err := Setup(Options{IsInit: true, UnifiedCgroups: true, Sys: f, Log: quietLog(), Reexec: true,
		Getenv: env(nil), Environ: func() []string { return []string{"PATH=/bin"} }, Args: []string{"/init"},
		FlushLog: func() { f.rec("flush log") }})
	if !errors.Is(err, errExec) {
		t.Fatalf("err = %v, want the exec to be reached", err)
	}
	want := append(rootMoveCalls(),
		"flush log", // queued log lines get out before the image is replaced
		"exec /proc/self/exe /init env-marker=true",
	)
	if !slices.Equal(f.calls, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(f.calls, "\n"), strings.Join(want, "\n"))
	}
}

// The re-exec carries ReexecEnv (the agent's FIPS mode follows the kernel
// through GODEBUG), replacing inherited variables of the same name.
func TestSetupReexecEnv(t *testing.T) {
	f := newFakeSys("rootfs")
	err := Setup(Options{IsInit: true, UnifiedCgroups: true, Sys: f, Log: quietLog(), Getenv: env(nil), Reexec: true,
		Environ:   func() []string { return []string{"HOME=/", "GODEBUG=x=1"} },
		ReexecEnv: []string{"GODEBUG=x=1,fips140=off", "PATH=/bin"}, Args: []string{"/init"}})
	if !errors.Is(err, errExec) {
		t.Fatalf("err = %v, want the exec to be reached", err)
	}
	want := []string{"HOME=/", "GODEBUG=x=1,fips140=off", "PATH=/bin", EnvNewRoot + "=1"}
	if !slices.Equal(f.execEnv, want) {
		t.Fatalf("exec env = %q, want %q", f.execEnv, want)
	}
}

// A root that needs no move is still re-executed when asked (Reexec), so
// that ReexecEnv takes effect; without Reexec it is not.
func TestSetupReexecWithoutMove(t *testing.T) {
	f := newFakeSys("ext4")
	err := Setup(Options{IsInit: true, UnifiedCgroups: true, Sys: f, Log: quietLog(), Getenv: env(nil),
		Environ: func() []string { return nil }, ReexecEnv: []string{"GODEBUG=fips140=on"}, Reexec: true, Args: []string{"/init"}})
	if !errors.Is(err, errExec) {
		t.Fatalf("err = %v, want the exec to be reached", err)
	}
	if f.hasPrefix("mount / /newroot") {
		t.Fatal("moved a root that allows pivot_root")
	}
	f.has(t, "exec /proc/self/exe /init env-marker=true")
	if !slices.Contains(f.execEnv, "GODEBUG=fips140=on") {
		t.Fatalf("exec env = %q lacks the GODEBUG", f.execEnv)
	}
	// Second start: marked, so no loop even with Reexec.
	f2 := newFakeSys("ext4")
	f2.mounts = append(f2.mounts, fakeMount{"/dev", "devtmpfs"}, fakeMount{"/proc", "proc"}, fakeMount{"/sys", "sysfs"})
	if err := Setup(Options{IsInit: true, UnifiedCgroups: true, Sys: f2, Log: quietLog(),
		Getenv: env(map[string]string{EnvNewRoot: "1"}), Reexec: true}); err != nil {
		t.Fatal(err)
	}
	if f2.hasPrefix("exec") {
		t.Fatal("second start re-executed again")
	}
}

func TestSetupSecondStartFinishes(t *testing.T) {
	f := newFakeSys("rootfs")
	// After the move: the base filesystems are there, / is the bind.
	f.mounts = append(f.mounts, fakeMount{"/dev", "devtmpfs"}, fakeMount{"/proc", "proc"}, fakeMount{"/sys", "sysfs"})
	f.files["/dev/ptmx"] = nil // the devtmpfs character node
	err := Setup(Options{IsInit: true, UnifiedCgroups: true, Hostname: "sandbox", Sys: f, Log: quietLog(),
		Getenv: env(map[string]string{EnvNewRoot: "1"})})
	if err != nil {
		t.Fatal(err)
	}
	if f.hasPrefix("mount / /newroot") || f.hasPrefix("exec") {
		t.Fatal("second start moved the root again")
	}
	if f.hasPrefix("mount proc /proc") {
		t.Fatal("remounted /proc")
	}
	f.has(t, fmt.Sprintf("mount devpts /dev/pts devpts %#x newinstance,ptmxmode=0666,mode=0620,gid=5", unix.MS_NOSUID|unix.MS_NOEXEC))
	f.has(t, fmt.Sprintf("mount shm /dev/shm tmpfs %#x mode=1777", unix.MS_NOSUID|unix.MS_NODEV))
	f.has(t, fmt.Sprintf("mount tmpfs /run tmpfs %#x mode=0755", unix.MS_NOSUID|unix.MS_NODEV))
	f.has(t, fmt.Sprintf("mount cgroup2 /sys/fs/cgroup cgroup2 %#x ", nosuidNodevNoexec))
	f.has(t, "remove /dev/ptmx")
	f.has(t, "symlink pts/ptmx /dev/ptmx")
	f.has(t, "setsid")
	f.has(t, "linkup lo")
	f.has(t, "hostname sandbox")
	f.has(t, "write /proc/self/oom_score_adj -997")

	// Idempotent: running again mounts nothing new.
	n := len(f.mounts)
	if err := Setup(Options{IsInit: true, UnifiedCgroups: true, Sys: f, Log: quietLog(), Getenv: env(map[string]string{EnvNewRoot: "1"})}); err != nil {
		t.Fatal(err)
	}
	if len(f.mounts) != n {
		t.Fatalf("second Setup mounted again: %v", f.mounts[n:])
	}
}

func TestSetupRootWithParentIsKept(t *testing.T) {
	f := newFakeSys("ext4")
	if err := Setup(Options{IsInit: true, UnifiedCgroups: true, Sys: f, Log: quietLog(), Getenv: env(nil)}); err != nil {
		t.Fatal(err)
	}
	if f.hasPrefix("mount / /newroot") || f.hasPrefix("exec") {
		t.Fatal("moved a root that allows pivot_root")
	}
}

func TestSetupNotInit(t *testing.T) {
	f := newFakeSys("ext4")
	if err := Setup(Options{IsInit: false, Sys: f, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	want := []string{"write /proc/self/oom_score_adj -997"}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("non-init did %v", f.calls)
	}
}

func TestSetupReportsMountFailure(t *testing.T) {
	f := newFakeSys("rootfs")
	f.failOn["mount sysfs"] = unix.ENODEV
	err := Setup(Options{IsInit: true, Sys: f, Log: quietLog(), Getenv: env(nil)})
	if !errors.Is(err, unix.ENODEV) || !strings.Contains(err.Error(), "/sys") {
		t.Fatalf("err = %v", err)
	}
	if f.hasPrefix("exec") {
		t.Fatal("went on after a failed base mount")
	}
}

const procCgroups = `#subsys_name	hierarchy	num_cgroups	enabled
cpuset	0	1	1
cpu	0	1	1
cpuacct	0	1	1
blkio	0	1	1
memory	0	1	1
devices	0	1	1
freezer	0	1	1
net_cls	0	1	1
perf_event	0	1	1
net_prio	0	1	1
hugetlb	0	1	1
pids	0	1	1
rdma	0	1	0
bad/name	0	1	1
`

func TestV1Hierarchies(t *testing.T) {
	var names []string
	for _, h := range V1Hierarchies([]byte(procCgroups)) {
		names = append(names, h.Name)
		if h.Name == "cpu,cpuacct" && !slices.Equal(h.Links, []string{"cpu", "cpuacct"}) {
			t.Fatalf("links %v", h.Links)
		}
	}
	want := []string{"blkio", "cpu,cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "net_cls,net_prio", "perf_event", "pids"}
	if !slices.Equal(names, want) {
		t.Fatalf("hierarchies %v, want %v", names, want)
	}
}

func TestSetupCgroupV1(t *testing.T) {
	f := newFakeSys("ext4")
	f.files["/proc/cgroups"] = []byte(procCgroups)
	if err := Setup(Options{IsInit: true, UnifiedCgroups: false, Sys: f, Log: quietLog(), Getenv: env(nil)}); err != nil {
		t.Fatal(err)
	}
	f.has(t, fmt.Sprintf("mount tmpfs /sys/fs/cgroup tmpfs %#x mode=0755", nosuidNodevNoexec))
	f.has(t, fmt.Sprintf("mount cgroup /sys/fs/cgroup/memory cgroup %#x memory", nosuidNodevNoexec))
	f.has(t, fmt.Sprintf("mount cgroup /sys/fs/cgroup/cpu,cpuacct cgroup %#x cpu,cpuacct", nosuidNodevNoexec))
	f.has(t, "symlink cpu,cpuacct /sys/fs/cgroup/cpu")
	if f.hasPrefix("mount cgroup2") {
		t.Fatal("mounted cgroup2 in v1 mode")
	}
}

func TestShutdown(t *testing.T) {
	f := newFakeSys("ext4")
	f.mounts = append(f.mounts, fakeMount{"/proc", "proc"}, fakeMount{"/run", "tmpfs"}, fakeMount{"/run/kata-containers/shared/containers", "virtiofs"})
	if err := Shutdown(Options{IsInit: true, Sys: f, Log: quietLog(), FlushLog: func() { f.rec("flush log") }}); err != nil {
		t.Fatal(err)
	}
	want := []string{"sync", "umount /run/kata-containers/shared/containers", "umount /proc", "umount /run", "sync", "flush log", "poweroff"}
	// /proc and /run have the same depth; only the relative order of the
	// share before /run and poweroff last matter.
	if f.calls[0] != "sync" || f.calls[len(f.calls)-1] != "poweroff" || f.calls[len(f.calls)-2] != "flush log" || f.calls[1] != want[1] || len(f.calls) != len(want) {
		t.Fatalf("calls %v", f.calls)
	}
	g := newFakeSys("ext4")
	if err := Shutdown(Options{IsInit: false, Sys: g, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.calls, []string{"sync"}) {
		t.Fatalf("non-init shutdown did %v", g.calls)
	}
}

func TestSetHostnameValidates(t *testing.T) {
	f := newFakeSys("ext4")
	for _, bad := range []string{"", strings.Repeat("a", 65), "a b", "x/y"} {
		if err := SetHostname(f, bad); err == nil {
			t.Fatalf("hostname %q accepted", bad)
		}
	}
	if err := SetHostname(f, "pod-1.example"); err != nil {
		t.Fatal(err)
	}
	f.has(t, "hostname pod-1.example")
}

func TestDebugConsoleShell(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("no /dev/ptmx")
	}
	sock := filepath.Join(t.TempDir(), "console.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := StartDebugConsole(ctx, ConsoleOptions{Enabled: true, Port: 1026, Log: quietLog(),
		Listen: func(port uint32) (net.Listener, error) { return net.Listen("unix", sock) }})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("echo con$((40+2))sole\nexit\n")); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	if !strings.Contains(string(out), "con42sole") {
		t.Fatalf("shell output %q", out)
	}
}

func TestDebugConsoleOffOrNoShell(t *testing.T) {
	listened := false
	l := func(uint32) (net.Listener, error) { listened = true; return nil, errors.New("no") }
	if err := StartDebugConsole(context.Background(), ConsoleOptions{Enabled: false, Port: 1026, Listen: l}); err != nil || listened {
		t.Fatal("disabled console listened")
	}
	if err := StartDebugConsole(context.Background(), ConsoleOptions{Enabled: true, Port: 1026, Shell: "/nonexistent/sh", Listen: l, Log: quietLog()}); err != nil || listened {
		t.Fatal("console without a shell listened")
	}
}

func TestReseedRandomForReal(t *testing.T) {
	if _, err := os.Stat(RandomDevice); err != nil {
		t.Skip("no random device")
	}
	// Mixing in bytes is harmless; as root they are also credited.
	if err := ReseedRandom([]byte("some host entropy for the guest pool")); err != nil {
		t.Fatal(err)
	}
}

func TestSetTimeValidates(t *testing.T) {
	for _, c := range [][2]int64{{-1, 0}, {0, -1}, {0, 1_000_000}, {1 << 62, 0}} {
		if err := SetTime(c[0], c[1]); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("SetTime(%d, %d) = %v", c[0], c[1], err)
		}
	}
}

// rootMoveCalls are moveRoot's calls on a first start: the kernel
// filesystems, then the initramfs root bound onto /newroot and made the root.
func rootMoveCalls() []string {
	return []string{
		fmt.Sprintf("mount proc /proc proc %#x ", nosuidNodevNoexec),
		fmt.Sprintf("mount sysfs /sys sysfs %#x ", nosuidNodevNoexec),
		fmt.Sprintf("mount devtmpfs /dev devtmpfs %#x mode=0755", unix.MS_NOSUID),
		fmt.Sprintf("mount / /newroot  %#x ", unix.MS_BIND),
		fmt.Sprintf("mount /dev /newroot/dev  %#x ", unix.MS_MOVE),
		fmt.Sprintf("mount /proc /newroot/proc  %#x ", unix.MS_MOVE),
		fmt.Sprintf("mount /sys /newroot/sys  %#x ", unix.MS_MOVE),
		"chdir /newroot",
		fmt.Sprintf("mount . /  %#x ", unix.MS_MOVE),
		"chroot .",
		"chdir /",
	}
}

// An agent the image runs from its squashfs mount (/agent) takes that mount
// into the new root with the kernel filesystems: libcontainer seals
// /proc/self/exe with an overlay of its directory, which must resolve.
func TestSetupMovesTheAgentImageMount(t *testing.T) {
	f := newFakeSys("rootfs")
	f.mounts = append(f.mounts, fakeMount{"/agent", "squashfs"})
	f.files["/dev/ptmx"] = nil
	err := Setup(Options{IsInit: true, UnifiedCgroups: true, Sys: f, Log: quietLog(),
		Getenv: env(nil), Environ: func() []string { return []string{"PATH=/bin"} }, Args: []string{"/agent/kata-agent"},
		FlushLog: func() {}})
	if err != nil {
		t.Fatal(err)
	}
	move := rootMoveCalls()
	want := slices.Concat(move[:4], []string{fmt.Sprintf("mount /agent /newroot/agent  %#x ", unix.MS_MOVE)}, move[4:])
	if len(f.calls) < len(want) || !slices.Equal(f.calls[:len(want)], want) {
		t.Fatalf("calls:\n%s\nwant first:\n%s", strings.Join(f.calls, "\n"), strings.Join(want, "\n"))
	}
	if !f.isMounted("/agent") {
		t.Fatalf("/agent is not mounted in the new root: %v", f.mounts)
	}
}
