// Package integration holds host-integration tests of the agent: they run
// the agent's server in-process on a unix socket, as root, and drive real
// containers from a busybox rootfs through the public protocol.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/reaper"
	"github.com/sandbox-guest/sandbox-guest/agent/sandbox"
	"github.com/sandbox-guest/sandbox-guest/agent/wiring"
	"github.com/sandbox-guest/sandbox-guest/host/ocispec"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/ocipb"
)

func init() {
	// libcontainer re-executes this test binary as the container init.
	if container.IsInit() {
		container.Init()
	}
	if len(os.Args) > 1 && os.Args[1] == container.InitArg {
		// Started as an init but not recognised as one: never fall
		// through to running the tests again inside a container.
		fmt.Fprintln(os.Stderr, "integration.test: init without libcontainer's environment")
		os.Exit(255)
	}
	// As the agent's main does: keep the first thread off the goroutines
	// that join a container's namespaces and end locked (libcontainer's),
	// which the runtime would park there for ever, still inside.
	runtime.LockOSThread()
}

var (
	theReaper *reaper.Reaper
	skipWhy   string
	busybox   = "/bin/busybox"
)

func TestMain(m *testing.M) {
	switch {
	case os.Geteuid() != 0:
		skipWhy = "needs root"
	default:
		if _, err := os.Stat(busybox); err != nil {
			skipWhy = "needs Debian's busybox-static at /bin/busybox"
		}
	}
	if skipWhy != "" && required() {
		// In CI a missing prerequisite must not pass as a run of skips.
		fmt.Fprintf(os.Stderr, "integration tests required (INTEGRATION_REQUIRE=1 or CI=true) but cannot run: %s\n", skipWhy)
		os.Exit(1)
	}
	if skipWhy == "" {
		var err error
		theReaper, err = reaper.Start(reaper.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "reaper:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if rootfsCache != "" {
		_ = os.RemoveAll(filepath.Dir(rootfsCache))
	}
	if agentctlBin != "" {
		_ = os.RemoveAll(filepath.Dir(agentctlBin))
	}
	os.Exit(code)
}

// required reports whether the tests must run rather than skip: asked for
// with INTEGRATION_REQUIRE=1, and always in CI.
func required() bool {
	return os.Getenv("INTEGRATION_REQUIRE") == "1" || os.Getenv("CI") == "true"
}

// agent is an in-process agent serving on a unix socket, with a client.
type agent struct {
	t      *testing.T
	sb     *sandbox.Sandbox
	cli    pb.AgentServiceService
	sock   string
	rootfs string
	group  string
	roots  wiring.Roots
}

// startAgent starts the agent as kata-agent assembles it, with its
// directories under a temporary one; opts adjust it further.
func startAgent(t *testing.T, opts ...wiring.Option) *agent {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	dir := t.TempDir()
	a := &agent{t: t, rootfs: busyboxRootfs(t), group: fmt.Sprintf("sgtest-%d-%d", os.Getpid(), time.Now().UnixNano())}
	a.roots = hostRoots(dir)
	opts = append([]wiring.Option{wiring.WithCgroupGroup(a.group)}, opts...)
	var w *wiring.Agent
	a.sock, w = serveAgent(t, dir, config.Default(), a.roots, opts...)
	a.sb = w.Sandbox()
	conn, err := net.Dial("unix", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	tc := ttrpc.NewClient(conn)
	a.cli = pb.NewAgentServiceClient(tc)
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		_ = a.sb.DestroySandbox(dctx)
		_ = tc.Close()
		removeCgroups(a.group)
	})
	return a
}

// hostRoots puts every directory of the agent under dir. The agent gets a
// sysfs and /dev of its own: the host's CPUs and devices are not the
// agent's to online or claim.
func hostRoots(dir string) wiring.Roots {
	return wiring.Roots{
		Bundles: filepath.Join(dir, "bundles"),
		Sandbox: filepath.Join(dir, "sandbox"),
		Shared:  filepath.Join(dir, "shared"),
		State:   filepath.Join(dir, "state"),
		Kata:    filepath.Join(dir, "kata"),
		Sysfs:   filepath.Join(dir, "sys"),
		Dev:     filepath.Join(dir, "dev"),
	}
}

// serveAgent serves the agent as kata-agent assembles it (wiring.New) on a
// unix socket in dir, with the process's reaper and a stand-in for the
// host's clock; it returns the socket's path and the agent. The test's
// cleanup stops both.
func serveAgent(t *testing.T, dir string, cfg config.Config, roots wiring.Roots, opts ...wiring.Option) (string, *wiring.Agent) {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts = append([]wiring.Option{
		wiring.WithRoots(roots), wiring.WithReaper(theReaper), wiring.WithLog(log), wiring.WithSystem(hostSystem{}),
	}, opts...)
	w, err := wiring.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Serve(ctx, l); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		w.Close()
	})
	return sock, w
}

// hostSystem stands in for the guest's clock and entropy pool: the
// development host's are not the agent's to change.
type hostSystem struct{}

func (hostSystem) SetTime(int64, int64) error { return nil }
func (hostSystem) ReseedRandom([]byte) error  { return nil }

var rootfsCache string

// busyboxRootfs builds (once per test binary) a rootfs with busybox and a
// symlink per applet.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	if rootfsCache != "" {
		return rootfsCache
	}
	dir, err := os.MkdirTemp("", "sg-busybox-")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	var list bytes.Buffer
	cmd := exec.Command(busybox, "--list-full")
	cmd.Stdout = &list
	if err := reaper.RunCmd(cmd); err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(list.String()) {
		if p == "bin/busybox" {
			continue
		}
		_ = os.Symlink("/bin/busybox", filepath.Join(root, p))
	}
	_ = os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	_ = os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\n"), 0o644)
	rootfsCache = root
	return root
}

// spec returns a default spec for args.
func (a *agent) spec(tty bool, args ...string) *pb.Spec {
	return ocipb.FromSpec(defaultSpec(a.rootfs, args, tty))
}

// defaultSpec is the host tools' default spec with a short hostname the
// tests look for.
func defaultSpec(rootfs string, args []string, tty bool) *specs.Spec {
	s := ocispec.Default(rootfs, args, tty)
	s.Hostname = "c"
	return s
}

// removeCgroups removes the test's cgroup group (leftovers fail the leak
// test, not the others).
func removeCgroups(group string) {
	for _, d := range cgroupGroupDirs(group) {
		_ = os.Remove(d)
	}
}

// cgroupGroupDirs lists the group's directories in every hierarchy.
func cgroupGroupDirs(group string) []string {
	var out []string
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if filepath.Base(p) == group {
			out = append(out, p)
			return filepath.SkipDir
		}
		if strings.Count(p, "/") > 8 {
			return filepath.SkipDir
		}
		return nil
	})
	return out
}
