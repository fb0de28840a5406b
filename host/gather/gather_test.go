package gather

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// fakeAgent answers the calls a gather makes; the embedded nil interface
// makes any other call panic, which a test would notice.
type fakeAgent struct {
	pb.AgentServiceService
	containers string // agent_containers answer; "" is Unimplemented-like
	failRoutes bool
	slowStats  bool
	statsOf    []string
}

func (f *fakeAgent) GetGuestDetails(context.Context, *pb.GuestDetailsRequest) (*pb.GuestDetailsResponse, error) {
	return &pb.GuestDetailsResponse{MemBlockSizeBytes: 128 << 20, AgentDetails: &pb.AgentDetails{Version: "1.2.3"}}, nil
}

func (f *fakeAgent) GetMetrics(context.Context, *pb.GetMetricsRequest) (*pb.Metrics, error) {
	return &pb.Metrics{Metrics: "# HELP x\nkata_container_memory_usage_bytes{container_id=\"fromMetrics\"} 10\n"}, nil
}

func (f *fakeAgent) ListInterfaces(context.Context, *pb.ListInterfacesRequest) (*pb.Interfaces, error) {
	return &pb.Interfaces{Interfaces: []*typespb.Interface{{Name: "eth0", Mtu: 1500}}}, nil
}

func (f *fakeAgent) ListRoutes(context.Context, *pb.ListRoutesRequest) (*pb.Routes, error) {
	if f.failRoutes {
		return nil, status.Error(codes.Internal, "netlink is broken")
	}
	return &pb.Routes{Routes: []*typespb.Route{{Dest: "10.0.0.0/24", Device: "eth0"}}}, nil
}

func (f *fakeAgent) GetDiagnosticData(_ context.Context, r *pb.GetDiagnosticDataRequest) (*pb.GetDiagnosticDataResponse, error) {
	switch r.GetLogType() {
	case "agent_log":
		return &pb.GetDiagnosticDataResponse{Data: `{"msg":"serving"}` + "\n"}, nil
	case "agent_containers":
		if f.containers == "" {
			return nil, status.Error(codes.InvalidArgument, `log type "agent_containers" is not supported`)
		}
		return &pb.GetDiagnosticDataResponse{Data: f.containers}, nil
	}
	return nil, status.Error(codes.InvalidArgument, "unknown")
}

func (f *fakeAgent) StatsContainer(ctx context.Context, r *pb.StatsContainerRequest) (*pb.StatsContainerResponse, error) {
	f.statsOf = append(f.statsOf, r.GetContainerId())
	if f.slowStats {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &pb.StatsContainerResponse{CgroupStats: &pb.CgroupStats{PidsStats: &pb.PidsStats{Current: 3}}}, nil
}

// readArchive returns the members of a tar.gz by name under the top
// directory, checking that every member is under it.
func readArchive(t *testing.T, b []byte, top string) map[string]string {
	t.Helper()
	gotTop, m, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if gotTop != top {
		t.Fatalf("archive top directory %q, want %q", gotTop, top)
	}
	return m
}

var fixedNow = time.Date(2026, 12, 1, 3, 4, 5, 0, time.UTC)

func TestWriteCollectsEveryPart(t *testing.T) {
	dir := t.TempDir()
	qemuLog := filepath.Join(dir, "qemu.log")
	os.WriteFile(qemuLog, []byte("qemu says hi\n"), 0o644)
	big := filepath.Join(dir, "console.log")
	os.WriteFile(big, bytes.Repeat([]byte("c"), 100), 0o644)
	f := &fakeAgent{containers: `[{"id":"c1","state":"running","init_pid":42},{"id":"c2","state":"stopped","exit_code":0}]`}
	var buf bytes.Buffer
	sum, err := Write(context.Background(), &buf, Options{
		Agent:       f,
		HostLogs:    []HostLog{{Name: "qemu.log", Path: qemuLog}, {Name: "console.log", Path: big}, {Name: "virtiofsd.log", Path: filepath.Join(dir, "absent.log")}},
		MaxLogBytes: 40,
		Now:         func() time.Time { return fixedNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	m := readArchive(t, buf.Bytes(), "sandbox-gather-20261201T030405Z")
	for _, name := range []string{"guest-details.json", "metrics.txt", "interfaces.json", "routes.json", "containers.json",
		"containers/c1/state.json", "containers/c1/stats.json", "containers/c2/state.json", "containers/c2/stats.json",
		"agent.log", "host/qemu.log", "host/console.log", "errors.txt", "summary.json"} {
		if _, ok := m[name]; !ok {
			t.Errorf("archive lacks %s; has %v", name, keys(m))
		}
	}
	if v := jsonPath(t, m["guest-details.json"], "mem_block_size_bytes"); v != "134217728" {
		t.Errorf("guest-details.json mem_block_size_bytes = %v:\n%s", v, m["guest-details.json"])
	}
	if v := jsonPath(t, m["containers/c1/state.json"], "init_pid"); v != 42.0 {
		t.Errorf("c1 state init_pid = %v", v)
	}
	if v := jsonPath(t, m["containers/c1/stats.json"], "cgroup_stats", "pids_stats", "current"); v != "3" {
		t.Errorf("c1 stats pids current = %v", v)
	}
	if m["agent.log"] != `{"msg":"serving"}`+"\n" || m["host/qemu.log"] != "qemu says hi\n" {
		t.Errorf("logs: %q %q", m["agent.log"], m["host/qemu.log"])
	}
	if c := m["host/console.log"]; !strings.HasPrefix(c, "[gather: first 60 bytes of 100 left out]\n") || !strings.HasSuffix(c, strings.Repeat("c", 40)) {
		t.Errorf("console.log not cut to its last 40 bytes: %q", c)
	}
	// The one failure is recorded, and only it.
	if e := m["errors.txt"]; strings.Count(e, "\n") != 1 || !strings.HasPrefix(e, "host/virtiofsd.log: ") || !strings.Contains(e, "no such file") {
		t.Errorf("errors.txt = %q", e)
	}
	var s Summary
	if err := json.Unmarshal([]byte(m["summary.json"]), &s); err != nil || len(s.Errors) != 1 || strings.Join(s.Containers, ",") != "c1,c2" {
		t.Errorf("summary %+v %v", s, err)
	}
	if len(sum.Errors) != 1 {
		t.Errorf("returned summary errors %v", sum.Errors)
	}
}

// A failing part, a hanging call and hostile container ids are recorded
// and the gather goes on.
func TestWriteRecordsFailedPartsAndGoesOn(t *testing.T) {
	f := &fakeAgent{failRoutes: true, slowStats: true, containers: `[{"id":"../../etc"},{"id":"ok"}]`}
	var buf bytes.Buffer
	start := time.Now()
	_, err := Write(context.Background(), &buf, Options{Agent: f, PartTimeout: 100 * time.Millisecond, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gather took %v with a 100ms part timeout", d)
	}
	m := readArchive(t, buf.Bytes(), TopDir(fixedNow))
	e := m["errors.txt"]
	for _, want := range []string{"routes.json: ", "netlink is broken", `container id "../../etc" is not usable`, "containers/ok/stats.json: ", "deadline"} {
		if !strings.Contains(e, want) {
			t.Errorf("errors.txt lacks %q:\n%s", want, e)
		}
	}
	if _, ok := m["routes.json"]; ok {
		t.Error("routes.json written for a failed call")
	}
	if _, ok := m["interfaces.json"]; !ok {
		t.Error("interfaces.json missing after routes failed")
	}
	for name := range m {
		if strings.Contains(name, "..") {
			t.Errorf("member %q", name)
		}
	}
}

// An agent without agent_containers: the ids its metrics name are used.
func TestWriteFallsBackToMetricsForContainerIDs(t *testing.T) {
	f := &fakeAgent{}
	var buf bytes.Buffer
	sum, err := Write(context.Background(), &buf, Options{Agent: f, Containers: []string{"asked"}, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(f.statsOf, ",") != "asked,fromMetrics" || strings.Join(sum.Containers, ",") != "asked,fromMetrics" {
		t.Fatalf("stats asked for %v, summary %v", f.statsOf, sum.Containers)
	}
	m := readArchive(t, buf.Bytes(), TopDir(fixedNow))
	if !strings.Contains(m["errors.txt"], "containers.json: ") || !strings.Contains(m["errors.txt"], "containers/asked/state.json: the agent did not list") {
		t.Errorf("errors.txt:\n%s", m["errors.txt"])
	}
}

// Without an agent connection the host logs are still gathered.
func TestWriteWithoutAgentKeepsHostLogs(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "console.log")
	os.WriteFile(p, []byte("kernel panic\n"), 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err := Write(context.Background(), &buf, Options{AgentErr: errors.New("connection refused"),
		HostLogs: []HostLog{{Name: "console.log", Path: p}, {Name: "qemu.log", Path: fifo}}, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	m := readArchive(t, buf.Bytes(), TopDir(fixedNow))
	if m["host/console.log"] != "kernel panic\n" {
		t.Errorf("console.log = %q", m["host/console.log"])
	}
	if e := m["errors.txt"]; !strings.Contains(e, "agent: connection refused") || !strings.Contains(e, "host/qemu.log: ") || !strings.Contains(e, "not a regular file") {
		t.Errorf("errors.txt:\n%s", e)
	}
}

func TestToDirWritesOneArchive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	p, _, err := ToDir(context.Background(), dir, Options{Agent: &fakeAgent{}, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(dir, "sandbox-gather-20261201T030405Z.tar.gz") {
		t.Errorf("path %s", p)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("dir holds %v, want the archive only", ents)
	}
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// jsonPath decodes doc and returns the value at the keys.
func jsonPath(t *testing.T, doc string, keys ...string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
