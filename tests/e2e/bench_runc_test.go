//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	"github.com/sandbox-guest/sandbox-guest/image-builder/initrd"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// The runc anchor of the lifecycle row: `runc run` of the same rootfs, with
// a spec mirroring the one the agent gets, in the same guest as the agent's
// own lifecycles. Route: the image gets the debug console (busybox sh on
// vsock port 1026); runc (built static from the runc version in go.mod by
// `make bench`, passed as BENCH_RUNC) and timeruns (tests/e2e/runcanchor)
// are put in the shared directory (runc is copied to the guest's /run
// first, as the agent lives in RAM too), and the console starts timeruns, which
// times each `runc run` in the guest and writes the times to the share.
// `runc run` also deletes the container; the agent's figure leaves the
// RemoveContainer out, so the comparison leans in runc's disfavour.

const debugConsolePort = 1026

// debugInitrd packs the agent of BENCH_AGENT (default bin/kata-agent, what
// `make bench` just built) with the debug applets.
func debugInitrd(tb testing.TB) string {
	agent := os.Getenv("BENCH_AGENT")
	if agent == "" {
		agent = filepath.Join("..", "..", "bin", "kata-agent")
	}
	out := filepath.Join(tb.TempDir(), "initrd-debug.img")
	agentImage := os.Getenv("BENCH_AGENT_IMAGE") != "0"
	_, err := initrd.Build(initrd.Options{
		Agent: agent, RootfsDir: filepath.Join("..", "..", "rootfs"), Debug: true,
		Busybox: fixture.DefaultBusybox, Output: out,
		// As the main image; BENCH_AGENT_IMAGE=0 makes the agent /init
		// (the layout before the agent image, for comparisons).
		AgentImage: agentImage, Compression: initrd.DefaultCompression(agentImage),
	})
	if err != nil {
		tb.Fatalf("debug initramfs: %v", err)
	}
	return out
}

// runcSpec mirrors fixture.Spec for runc.
func runcSpec(sid, cid string) *specs.Spec {
	caps := []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
	deny := false
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: []string{"true"}, Cwd: "/",
			Env:             []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=xterm"},
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: fixture.GuestRootfs(cid)},
		Hostname: sid,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "bind", Source: fixture.GuestSandboxShm, Options: []string{"rbind"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Resources:   &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: deny, Access: "rwm"}}},
			CgroupsPath: "/runc-bench/" + cid,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
			},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// lifecycles runs create+start+wait (timed) and remove of `true` n times.
func (s *suite) lifecycles(tb testing.TB, ctx context.Context, cid string, n int) []time.Duration {
	var lc []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		_, err := s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
			ContainerId: cid, ExecId: cid, OCI: fixture.Spec(sandboxID, cid, []string{"true"}),
		})
		check(tb, "CreateContainer", err)
		_, err = s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
		check(tb, "StartContainer", err)
		if st := s.wait(tb, cid, cid); st != 0 {
			tb.Fatalf("container exited %d", st)
		}
		lc = append(lc, time.Since(start))
		s.remove(tb, cid)
	}
	return lc
}

// runcAnchor boots the debug image and returns the medians of the agent's
// lifecycle and of `runc run`, n of each, in that one guest. A missing
// BENCH_RUNC skips the anchor with the reason.
func runcAnchor(tb testing.TB, n int) (agent, runc time.Duration, skipped string) {
	runcBin := os.Getenv("BENCH_RUNC")
	if runcBin == "" {
		return 0, 0, "BENCH_RUNC unset (make bench builds runc static and sets it)"
	}
	timeruns := filepath.Join(tb.TempDir(), "timeruns")
	if out, err := exec.Command("gcc", "-static", "-Os", "-s", "-o", timeruns, filepath.Join("runcanchor", "timeruns.c")).CombinedOutput(); err != nil {
		tb.Fatalf("build timeruns: %v\n%s", err, out)
	}
	s := bootSuite(tb, vmm.WithInitrd(debugInitrd(tb)),
		vmm.WithAppend("agent.debug_console", fmt.Sprintf("agent.debug_console_vport=%d", debugConsolePort)))
	defer s.vm.Close()
	bctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ctx, bcancel := s.vm.Bound(bctx)
	defer bcancel()
	s.createSandbox(ctx, tb, nil)

	const cid = "bench"
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, cid), s.bb); err != nil {
		tb.Fatal(err)
	}
	// The bundle and the tools, in the share.
	hostDir := filepath.Join(s.share, "runc-anchor")
	guestDir := fixture.GuestSharedDir + "runc-anchor"
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, f := range []struct{ src, name string }{{runcBin, "runc"}, {timeruns, "timeruns"}} {
		b, err := os.ReadFile(f.src)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hostDir, f.name), b, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	spec, err := json.Marshal(runcSpec(sandboxID, cid))
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "config.json"), spec, 0o644); err != nil {
		tb.Fatal(err)
	}

	// Alternate halves so that drift in the machine's load hits both.
	var agentRuns []time.Duration
	var runcRuns []time.Duration
	for half := 0; half < 2; half++ {
		agentRuns = append(agentRuns, s.lifecycles(tb, ctx, cid, n/2)...)
		runcRuns = append(runcRuns, s.runcRuns(tb, ctx, guestDir, hostDir, n/2)...)
	}
	return median(agentRuns), median(runcRuns), ""
}

// runcRuns has the debug console start timeruns on `runc run` and reads
// its times from the share.
func (s *suite) runcRuns(tb testing.TB, ctx context.Context, guestDir, hostDir string, n int) []time.Duration {
	out := filepath.Join(hostDir, "times.txt")
	os.Remove(out)
	c, err := s.vm.DialVsock(ctx, debugConsolePort)
	if err != nil {
		tb.Fatalf("debug console: %v", err)
	}
	defer c.Close()
	// runc runs from the guest's RAM, as the agent does: from the share,
	// each run would read its 10 MB (and clone it for the container's
	// init) over virtio-fs.
	cmd := fmt.Sprintf("cp %[1]s/runc /run/runc-anchor && %[1]s/timeruns %[2]d /run/runc-anchor --root /run/runc-bench run --bundle %[1]s runc-bench > %[1]s/times.txt 2>&1; echo anchor-''finished\n",
		guestDir, n)
	if _, err := c.Write([]byte(cmd)); err != nil {
		tb.Fatalf("debug console: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "anchor-finished") {
			break
		}
	}
	b, _ := os.ReadFile(out)
	var ds []time.Duration
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if v, err := strconv.ParseFloat(l, 64); err == nil {
			ds = append(ds, time.Duration(v*1e6))
		}
	}
	if len(ds) != n || !strings.HasSuffix(strings.TrimSpace(string(b)), "done") {
		tb.Fatalf("runc run in the guest: %d of %d runs timed; output:\n%s", len(ds), n, b)
	}
	return ds
}
