package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/agent/hotplug"
	"github.com/sandbox-guest/sandbox-guest/agent/metrics"
	"github.com/sandbox-guest/sandbox-guest/agent/version"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// startAgent serves opts on a unix socket and returns a client for it.
func startHotplugAgent(t *testing.T, opts Options) pb.AgentServiceService {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return pb.NewAgentServiceClient(c)
}

func writeHotplugTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readHotplugFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newTestOnliner(t *testing.T, sysfs string) *hotplug.Onliner {
	t.Helper()
	o, err := hotplug.New(hotplug.Options{SysfsRoot: sysfs, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func wantHotplugCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || !strings.Contains(st.Message(), substr) {
		t.Errorf("got %v, want %s mentioning %q", err, code, substr)
	}
}

func TestOnlineCPUMemHandler(t *testing.T) {
	sysfs := t.TempDir()
	writeHotplugTree(t, sysfs, map[string]string{
		"devices/system/memory/block_size_bytes": "8000000\n",
		"devices/system/memory/memory0/state":    "online\n",
		"devices/system/memory/memory32/state":   "offline\n",
		"devices/system/cpu/cpu0/online":         "1\n",
		"devices/system/cpu/online":              "0\n",
	})
	c := startHotplugAgent(t, Options{Hotplug: newTestOnliner(t, sysfs)})
	ctx := context.Background()

	if _, err := c.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{Wait: false}); err != nil {
		t.Fatal(err)
	}
	if got := readHotplugFile(t, filepath.Join(sysfs, "devices/system/memory/memory32/state")); got != "online" {
		t.Errorf("memory32 state = %q", got)
	}
	// nb_cpus is the total: the one CPU online is enough.
	if _, err := c.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{NbCpus: 1, CpuOnly: true}); err != nil {
		t.Fatalf("nb_cpus=1 with one CPU online: %v", err)
	}
	// No second CPU ever shows up: bounded wait, then DeadlineExceeded.
	start := time.Now()
	_, err := c.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{NbCpus: 2, CpuOnly: true})
	wantHotplugCode(t, err, codes.DeadlineExceeded, "nb_cpus=2")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}

	// A block whose state cannot be written: the error names it.
	if _, err := os.Stat("/dev/full"); err == nil {
		dir := filepath.Join(sysfs, "devices/system/memory/memory33")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/dev/full", filepath.Join(dir, "state")); err != nil {
			t.Fatal(err)
		}
		_, err := c.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{})
		wantHotplugCode(t, err, codes.Internal, "memory block memory33")
	}
}

func TestMemHotplugByProbeHandler(t *testing.T) {
	sysfs := t.TempDir()
	writeHotplugTree(t, sysfs, map[string]string{"devices/system/memory/block_size_bytes": "8000000\n"})
	c := startHotplugAgent(t, Options{Hotplug: newTestOnliner(t, sysfs)})
	ctx := context.Background()

	_, err := c.MemHotplugByProbe(ctx, &pb.MemHotplugByProbeRequest{MemHotplugProbeAddr: []uint64{0x100000000}})
	wantHotplugCode(t, err, codes.InvalidArgument, "probe interface")

	writeHotplugTree(t, sysfs, map[string]string{"devices/system/memory/probe": ""})
	_, err = c.MemHotplugByProbe(ctx, &pb.MemHotplugByProbeRequest{MemHotplugProbeAddr: []uint64{0x100001000}})
	wantHotplugCode(t, err, codes.InvalidArgument, "0x100001000 is not aligned")

	_, err = c.MemHotplugByProbe(ctx, &pb.MemHotplugByProbeRequest{MemHotplugProbeAddr: make([]uint64, maxProbeAddrs+1)})
	wantHotplugCode(t, err, codes.InvalidArgument, "memHotplugProbeAddr")

	if _, err := c.MemHotplugByProbe(ctx, &pb.MemHotplugByProbeRequest{MemHotplugProbeAddr: []uint64{0x100000000}}); err != nil {
		t.Fatal(err)
	}
	if got := readHotplugFile(t, filepath.Join(sysfs, "devices/system/memory/probe")); got != "0x100000000" {
		t.Errorf("probe got %q", got)
	}
}

func TestGetGuestDetailsHandler(t *testing.T) {
	sysfs := t.TempDir()
	writeHotplugTree(t, sysfs, map[string]string{
		"devices/system/memory/block_size_bytes": "8000000\n",
		"devices/system/memory/probe":            "",
	})
	info := AgentInfo{
		InitDaemon:      true,
		DeviceHandlers:  []string{"blk", "vfio"},
		StorageHandlers: []string{"virtio-fs", "9p"},
		SupportsSeccomp: true,
		FIPS:            true,
	}
	c := startHotplugAgent(t, Options{Hotplug: newTestOnliner(t, sysfs), AgentInfo: info})
	resp, err := c.GetGuestDetails(context.Background(), &pb.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetMemBlockSizeBytes() != 0x8000000 || !resp.GetSupportMemHotplugProbe() {
		t.Errorf("memory details: size %#x, probe %v", resp.GetMemBlockSizeBytes(), resp.GetSupportMemHotplugProbe())
	}
	d := resp.GetAgentDetails()
	if d.GetVersion() != version.Version || !d.GetInitDaemon() || !d.GetSupportsSeccomp() ||
		!slices.Equal(d.GetDeviceHandlers(), info.DeviceHandlers) || !slices.Equal(d.GetStorageHandlers(), info.StorageHandlers) ||
		!slices.Equal(d.GetExtraFeatures(), []string{"fips"}) {
		t.Errorf("agent details = %v", d)
	}

	// Not asking for memory details leaves them zero.
	resp, err = c.GetGuestDetails(context.Background(), &pb.GuestDetailsRequest{})
	if err != nil || resp.GetMemBlockSizeBytes() != 0 || resp.GetSupportMemHotplugProbe() {
		t.Errorf("nothing asked: %v, %v", resp, err)
	}
}

func TestHotplugHandlersUnconfigured(t *testing.T) {
	c := startHotplugAgent(t, Options{AgentInfo: AgentInfo{Version: "9.9.9"}})
	ctx := context.Background()
	_, err := c.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{})
	wantHotplugCode(t, err, codes.Unimplemented, "OnlineCPUMem")
	_, err = c.GetMetrics(ctx, &pb.GetMetricsRequest{})
	wantHotplugCode(t, err, codes.Unimplemented, "GetMetrics")
	resp, err := c.GetGuestDetails(ctx, &pb.GuestDetailsRequest{})
	if err != nil || resp.GetAgentDetails().GetVersion() != "9.9.9" || len(resp.GetAgentDetails().GetExtraFeatures()) != 0 {
		t.Errorf("GetGuestDetails without hot-plug: %v, %v", resp, err)
	}
}

type oneHotplugContainer struct{}

func (oneHotplugContainer) CgroupPaths() map[string]string {
	return map[string]string{"c1": "/kata/c1"}
}

func TestGetMetricsHandler(t *testing.T) {
	proc, cg := t.TempDir(), t.TempDir()
	writeHotplugTree(t, proc, map[string]string{
		"self/status": "VmRSS:\t    7168 kB\nRssAnon:\t    1024 kB\nThreads:\t4\n",
		"self/fd/0":   "",
		"meminfo":     "MemTotal:         524288 kB\n",
		"stat":        "cpu  100 0 0 0 0 0 0 0 0 0\n",
		"loadavg":     "0.00 0.00 0.00 1/50 99\n",
	})
	writeHotplugTree(t, cg, map[string]string{"kata/c1/memory.current": "4096\n"})
	m := metrics.New(metrics.Options{ProcRoot: proc, CgroupRoot: cg, Containers: oneHotplugContainer{}})
	c := startHotplugAgent(t, Options{Metrics: m})
	resp, err := c.GetMetrics(context.Background(), &pb.GetMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"kata_agent_anon_rss_bytes 1048576",
		`kata_guest_meminfo{item="mem_total"} 536870912`,
		`kata_guest_cpu_seconds_total{cpu="total",mode="user"} 1`,
		`kata_container_memory_usage_bytes{container_id="c1"} 4096`,
	} {
		if !strings.Contains(resp.GetMetrics(), "\n"+line+"\n") {
			t.Errorf("metrics lack line %q:\n%s", line, resp.GetMetrics())
		}
	}

	// An unreadable procfs leaves those sections out; the scrape still answers.
	c = startHotplugAgent(t, Options{Metrics: metrics.New(metrics.Options{ProcRoot: filepath.Join(proc, "nope"), Goroutines: func() int { return 1 }})})
	resp, err = c.GetMetrics(context.Background(), &pb.GetMetricsRequest{})
	if err != nil {
		t.Fatalf("partial metrics failed: %v", err)
	}
	if !strings.Contains(resp.GetMetrics(), "kata_agent_goroutines 1\n") || strings.Contains(resp.GetMetrics(), "kata_guest_") {
		t.Errorf("partial metrics = %q", resp.GetMetrics())
	}
}
