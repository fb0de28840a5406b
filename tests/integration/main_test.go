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
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/reaper"
	"github.com/sandbox-guest/sandbox-guest/agent/sandbox"
	"github.com/sandbox-guest/sandbox-guest/agent/server"
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

// agent is an in-process agent serving on a unix socket, with a client.
type agent struct {
	t      *testing.T
	sb     *sandbox.Sandbox
	cli    pb.AgentServiceService
	sock   string
	rootfs string
	group  string
	cfg    sandbox.Config
}

// startAgent starts an agent; opts adjust its sandbox configuration.
func startAgent(t *testing.T, opts ...func(*sandbox.Config)) *agent {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	dir := t.TempDir()
	a := &agent{t: t, rootfs: busyboxRootfs(t), group: fmt.Sprintf("sgtest-%d-%d", os.Getpid(), time.Now().UnixNano())}
	a.cfg = sandbox.Config{
		BundleRoot:  filepath.Join(dir, "bundles"),
		SandboxDir:  filepath.Join(dir, "sandbox"),
		SharedDir:   filepath.Join(dir, "shared"),
		StateRoot:   filepath.Join(dir, "state"),
		CgroupGroup: a.group,
		Reaper:      theReaper,
		Log:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, o := range opts {
		o(&a.cfg)
	}
	a.sb = sandbox.New(a.cfg)
	srv, err := server.New(server.Options{Sandbox: a.sb, Log: a.cfg.Log})
	if err != nil {
		t.Fatal(err)
	}
	a.sock = filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, l); close(done) }()
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
		cancel()
		<-done
		removeCgroups(a.group)
	})
	return a
}

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
