package main

import (
	"bytes"
	"encoding/json"
	"github.com/sandbox-guest/sandbox-guest/host/gather"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 128 << 20: "128 MiB",
		3<<30 + 300<<20: "3.3 GiB", 1<<40 - 1: "1024 GiB", 5 << 50: "5 PiB", 1<<64 - 1: "16 EiB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0 ns", 850: "850 ns", 12 * time.Microsecond: "12 µs", 230 * time.Millisecond: "230 ms",
		1500 * time.Millisecond: "1.5 s", 59*time.Second + 940*time.Millisecond: "59.9 s",
		125 * time.Second: "2 min 5 s", 3*time.Hour + 2*time.Minute + 10*time.Second: "3 h 2 min",
		-230 * time.Millisecond: "-230 ms",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestTakeJSONFlag(t *testing.T) {
	rest, found := takeJSONFlag([]string{"ID", "--json", "--", "cmd", "--json"})
	if !found || strings.Join(rest, " ") != "ID -- cmd --json" {
		t.Fatalf("rest %q found %t: a --json after -- belongs to the process", rest, found)
	}
	if _, found := takeJSONFlag([]string{"--", "--json"}); found {
		t.Fatal("--json after -- taken")
	}
}

// fullAgent serves every call agentctl makes, with answers that carry
// sizes and durations.
func fullAgent(t *testing.T) string {
	f := &fakeAgent{}
	empty := func() (any, error) { return &emptypb.Empty{}, nil }
	var mu sync.Mutex
	read := map[string]bool{} // exec ids whose stdout was given
	stream := func(r *pb.ReadStreamRequest) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		key := r.ContainerId + "/" + r.ExecId
		if read[key] {
			return &pb.ReadStreamResponse{}, nil
		}
		read[key] = true
		return &pb.ReadStreamResponse{Data: []byte("hello from " + r.ContainerId + "\n")}, nil
	}
	iface := &typespb.Interface{Name: "eth0", HwAddr: "02:00:00:00:00:01", Mtu: 1500,
		IPAddresses: []*typespb.IPAddress{{Address: "10.0.0.2", Mask: "24"}}}
	routes := &pb.Routes{Routes: []*typespb.Route{{Dest: "10.0.0.0/24", Device: "eth0", Scope: 253}}}
	return serveFake(t, f, map[string]ttrpc.Method{
		"CreateContainer": method(f, func(*pb.CreateContainerRequest) (any, error) { return empty() }),
		"StartContainer":  method(f, func(*pb.StartContainerRequest) (any, error) { return empty() }),
		"RemoveContainer": method(f, func(*pb.RemoveContainerRequest) (any, error) { return empty() }),
		"ExecProcess":     method(f, func(*pb.ExecProcessRequest) (any, error) { return empty() }),
		"SignalProcess":   method(f, func(*pb.SignalProcessRequest) (any, error) { return empty() }),
		"WaitProcess": method(f, func(*pb.WaitProcessRequest) (any, error) {
			return &pb.WaitProcessResponse{Status: 0}, nil
		}),
		"ReadStdout":      method(f, stream),
		"ReadStderr":      method(f, func(*pb.ReadStreamRequest) (any, error) { return &pb.ReadStreamResponse{}, nil }),
		"WriteStdin":      method(f, func(*pb.WriteStreamRequest) (any, error) { return &pb.WriteStreamResponse{}, nil }),
		"CloseStdin":      method(f, func(*pb.CloseStdinRequest) (any, error) { return empty() }),
		"PauseContainer":  method(f, func(*pb.PauseContainerRequest) (any, error) { return empty() }),
		"ResumeContainer": method(f, func(*pb.ResumeContainerRequest) (any, error) { return empty() }),
		"StatsContainer": method(f, func(*pb.StatsContainerRequest) (any, error) {
			return &pb.StatsContainerResponse{CgroupStats: &pb.CgroupStats{
				MemoryStats: &pb.MemoryStats{Usage: &pb.MemoryData{Usage: 3 << 19, MaxUsage: 2 << 20, Limit: 64 << 20}},
				CpuStats:    &pb.CpuStats{CpuUsage: &pb.CpuUsage{TotalUsage: uint64(1500 * time.Millisecond)}},
				PidsStats:   &pb.PidsStats{Current: 2},
			}}, nil
		}),
		"CreateSandbox":     method(f, func(*pb.CreateSandboxRequest) (any, error) { return empty() }),
		"DestroySandbox":    method(f, func(*pb.DestroySandboxRequest) (any, error) { return empty() }),
		"OnlineCPUMem":      method(f, func(*pb.OnlineCPUMemRequest) (any, error) { return empty() }),
		"MemHotplugByProbe": method(f, func(*pb.MemHotplugByProbeRequest) (any, error) { return empty() }),
		"GetGuestDetails": method(f, func(*pb.GuestDetailsRequest) (any, error) {
			return &pb.GuestDetailsResponse{MemBlockSizeBytes: 128 << 20, AgentDetails: &pb.AgentDetails{Version: "1.2.3"}}, nil
		}),
		"GetMetrics": method(f, func(*pb.GetMetricsRequest) (any, error) {
			return &pb.Metrics{Metrics: "# TYPE kata_container_memory_limit_bytes gauge\nkata_container_memory_limit_bytes{container_id=\"c1\"} +Inf\nkata_guest_load{item=\"load1\"} 0.5\n"}, nil
		}),
		"UpdateInterface": method(f, func(*pb.UpdateInterfaceRequest) (any, error) { return iface, nil }),
		"UpdateRoutes":    method(f, func(*pb.UpdateRoutesRequest) (any, error) { return routes, nil }),
		"ListInterfaces": method(f, func(*pb.ListInterfacesRequest) (any, error) {
			return &pb.Interfaces{Interfaces: []*typespb.Interface{iface}}, nil
		}),
		"ListRoutes":      method(f, func(*pb.ListRoutesRequest) (any, error) { return routes, nil }),
		"AddARPNeighbors": method(f, func(*pb.AddARPNeighborsRequest) (any, error) { return empty() }),
		"GetIPTables": method(f, func(*pb.GetIPTablesRequest) (any, error) {
			return &pb.GetIPTablesResponse{Data: []byte("*filter\nCOMMIT\n")}, nil
		}),
		"SetIPTables": method(f, func(*pb.SetIPTablesRequest) (any, error) {
			return &pb.SetIPTablesResponse{Data: []byte("*filter\nCOMMIT\n")}, nil
		}),
		"CopyFile":         method(f, func(*pb.CopyFileRequest) (any, error) { return empty() }),
		"SetGuestDateTime": method(f, func(*pb.SetGuestDateTimeRequest) (any, error) { return empty() }),
		"ReseedRandomDev":  method(f, func(*pb.ReseedRandomDevRequest) (any, error) { return empty() }),
		"GetVolumeStats": method(f, func(*pb.VolumeStatsRequest) (any, error) {
			return &pb.VolumeStatsResponse{Usage: []*pb.VolumeUsage{{Total: 10 << 30, Used: 1536 << 20, Available: 8704 << 20, Unit: pb.VolumeUsage_BYTES}}}, nil
		}),
		"GetDiagnosticData": method(f, func(r *pb.GetDiagnosticDataRequest) (any, error) {
			if r.LogType == "agent_containers" {
				return &pb.GetDiagnosticDataResponse{Data: `[{"id":"c1","state":"running"}]`}, nil
			}
			return &pb.GetDiagnosticDataResponse{Data: `{"msg":"serving"}` + "\n"}, nil
		}),
	})
}

// commandCase is how one subcommand is exercised: its arguments, and what
// its human output must contain (nil: it prints nothing on success).
type commandCase struct {
	args  []string
	human []*regexp.Regexp
}

func res(exprs ...string) []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, e := range exprs {
		out = append(out, regexp.MustCompile(e))
	}
	return out
}

// Every subcommand prints one valid JSON document with --json (given
// before the command or among its arguments), and human units without
// it. A command added without a case here fails the test: the output
// layer is for all of them.
func TestEveryCommandHonoursJSON(t *testing.T) {
	addr := fullAgent(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "file")
	os.WriteFile(src, bytes.Repeat([]byte("x"), 3<<19), 0o644)
	rules := filepath.Join(dir, "rules")
	os.WriteFile(rules, []byte("*filter\nCOMMIT\n"), 0o644)
	in = strings.NewReader("")
	defer func() { in = os.Stdin }()

	cases := map[string]commandCase{
		"check":            {[]string{}, res(`^SERVING\n$`)},
		"version":          {[]string{}, res(`agent version: 9\.8\.7`)},
		"run":              {[]string{"--rootfs", "/r", "--id", "c1", "--", "/bin/true"}, res(`^hello from c1\n$`)},
		"exec":             {[]string{"c1", "--", "/bin/true"}, res(`^hello from c1\n$`)},
		"ps":               {[]string{"c1"}, res(`^hello from c1\n$`)},
		"kill":             {[]string{"c1", "KILL"}, nil},
		"stats":            {[]string{"c1"}, res(`memory\.usage\t1\.5 MiB\n`, `memory\.max_usage\t2 MiB\n`, `memory\.limit\t64 MiB\n`, `cpu\.total\t1\.5 s\n`, `pids\.current\t2\n`)},
		"pause":            {[]string{"c1"}, nil},
		"resume":           {[]string{"c1"}, nil},
		"rm":               {[]string{"c1"}, nil},
		"create-sandbox":   {[]string{"--id", "pod"}, nil},
		"destroy-sandbox":  {[]string{}, nil},
		"online-mem":       {[]string{"--cpus", "2"}, res(`^onlined in [0-9.]+ (ns|µs|ms|s)\n$`)},
		"mem-probe":        {[]string{"0x100000000"}, nil},
		"guest-details":    {[]string{}, res(`mem_block_size: 128 MiB \(0x8000000\)\n`)},
		"metrics":          {[]string{}, res(`kata_guest_load\{item="load1"\} 0\.5\n`)},
		"update-interface": {[]string{"--hwaddr", "02:00:00:00:00:01", "--name", "eth0", "--mtu", "1500"}, res(`eth0\s+02:00:00:00:00:01\s+1500`)},
		"update-routes":    {[]string{"10.0.0.0/24 dev eth0"}, res(`^10\.0\.0\.0/24 dev eth0 scope link\n$`)},
		"list-interfaces":  {[]string{}, res(`10\.0\.0\.2/24`)},
		"list-routes":      {[]string{}, res(`^10\.0\.0\.0/24 dev eth0 scope link\n$`)},
		"add-arp":          {[]string{"10.0.0.1", "02:00:00:00:00:09", "eth0"}, nil},
		"get-iptables":     {[]string{}, res(`^\*filter\nCOMMIT\n$`)},
		"set-iptables":     {[]string{rules}, res(`^\*filter\nCOMMIT\n$`)},
		"copy-file":        {[]string{src, "/run/kata-containers/shared/containers/c1/f"}, res(`^copied 1 entries \(1\.5 MiB\) to /run/kata-containers/shared/containers/c1/f in [0-9.]+ (ns|µs|ms|s)\n$`)},
		"set-time":         {[]string{"1700000000"}, res(`^guest clock set to 2023-11-14T22:13:20Z\n$`)},
		"reseed":           {[]string{"2048"}, res(`^fed 2 KiB to the guest's entropy pool\n$`)},
		"volume-stats":     {[]string{"/v"}, res(`^BYTES  total 10 GiB used 1\.5 GiB available 8\.5 GiB\n$`)},
		"gather":           {[]string{"-o", filepath.Join(dir, "gather")}, res(`^wrote \S+/sandbox-gather-\S+\.tar\.gz \([0-9.]+ (B|KiB), 8 members, 1 containers\) in [0-9.]+ (ns|µs|ms|s)\n$`)},
	}
	for name := range commands {
		if _, ok := cases[name]; !ok {
			t.Errorf("command %q has no case here: add one (its --json and human output)", name)
		}
	}
	for name, tc := range cases {
		if commands[name] == nil {
			t.Errorf("case for unknown command %q", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			argv := append([]string{"--addr", addr, name}, tc.args...)
			var stdout, stderr bytes.Buffer
			if rc := agentctl(argv, &stdout, &stderr); rc != 0 {
				t.Fatalf("human: rc=%d stderr=%s", rc, stderr.String())
			}
			human := stdout.String()
			if tc.human == nil && human != "" {
				t.Errorf("human output %q, want none", human)
			}
			for _, re := range tc.human {
				if !re.MatchString(human) {
					t.Errorf("human output %q does not match %s", human, re)
				}
			}
			for _, jsonArgv := range [][]string{
				append([]string{"--addr", addr, "--json", name}, tc.args...),
				append(append([]string{"--addr", addr, name}, "--json"), tc.args...),
			} {
				stdout.Reset()
				stderr.Reset()
				if rc := agentctl(jsonArgv, &stdout, &stderr); rc != 0 {
					t.Fatalf("%v: rc=%d stderr=%s", jsonArgv, rc, stderr.String())
				}
				var v any
				dec := json.NewDecoder(&stdout)
				if err := dec.Decode(&v); err != nil {
					t.Fatalf("%v: not JSON: %v\n%s", jsonArgv, err, stdout.String())
				}
				if _, ok := v.(map[string]any); !ok {
					if _, ok := v.([]any); !ok {
						t.Errorf("%v: JSON %T, want an object or an array", jsonArgv, v)
					}
				}
				if dec.More() {
					t.Errorf("%v: more than one JSON document", jsonArgv)
				}
			}
		})
	}
	jsonOut = false
}

// Spot checks of what the JSON carries: raw numbers with their unit in
// the name, the process's output and status for streaming commands.
func TestJSONCarriesRawNumbers(t *testing.T) {
	addr := fullAgent(t)
	in = strings.NewReader("")
	defer func() { in = os.Stdin; jsonOut = false }()
	get := func(args ...string) map[string]any {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if rc := agentctl(append([]string{"--addr", addr, "--json"}, args...), &stdout, &stderr); rc != 0 {
			t.Fatalf("%v: rc=%d %s", args, rc, stderr.String())
		}
		var m map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stdout.String())
		}
		return m
	}
	if m := get("exec", "c1", "--", "/bin/true"); m["exit_code"] != 0.0 || m["stdout"] != "hello from c1\n" {
		t.Errorf("exec JSON %v", m)
	}
	if m := get("reseed", "100"); m["bytes"] != 100.0 {
		t.Errorf("reseed JSON %v", m)
	}
	m := get("stats", "c1")
	usage := m["cgroup_stats"].(map[string]any)["memory_stats"].(map[string]any)["usage"].(map[string]any)
	if usage["usage"] != "1572864" { // protojson writes 64-bit numbers as strings
		t.Errorf("stats JSON memory usage %v", usage)
	}
	var samples []map[string]any
	var stdout, stderr bytes.Buffer
	agentctl([]string{"--addr", addr, "--json", "metrics"}, &stdout, &stderr)
	if err := json.Unmarshal(stdout.Bytes(), &samples); err != nil || len(samples) != 2 ||
		samples[0]["value"] != "+Inf" || samples[1]["value"] != 0.5 || samples[1]["labels"].(map[string]any)["item"] != "load1" {
		t.Errorf("metrics JSON %v %v", samples, err)
	}
}

// gather writes one archive whose members the summary names; the e2e and
// integration tests check the archive against real agents.
func TestGatherArchiveMembers(t *testing.T) {
	addr := fullAgent(t)
	dir := t.TempDir()
	vm := filepath.Join(dir, "vm")
	os.MkdirAll(vm, 0o755)
	for _, n := range []string{"qemu.log", "virtiofsd.log", "console.log"} {
		os.WriteFile(filepath.Join(vm, n), []byte(n+" text\n"), 0o644)
	}
	var stdout, stderr bytes.Buffer
	if rc := agentctl([]string{"--addr", addr, "--json", "gather", "-o", filepath.Join(dir, "out"), "--vm-dir", vm}, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc=%d %s", rc, stderr.String())
	}
	jsonOut = false
	var r struct {
		Archive string   `json:"archive"`
		Errors  []string `json:"errors"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.Archive == "" {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	members := archiveMembers(t, r.Archive)
	for _, want := range []string{"host/qemu.log", "host/virtiofsd.log", "host/console.log", "agent.log", "containers/c1/stats.json", "errors.txt"} {
		if _, ok := members[want]; !ok {
			t.Errorf("archive lacks %s: %v", want, slices.Sorted(maps.Keys(members)))
		}
	}
	if len(r.Errors) != 0 {
		t.Errorf("errors %v", r.Errors)
	}
}

// Without an agent, gather still writes the host logs and says why the
// agent's parts are missing.
func TestGatherWithoutAgent(t *testing.T) {
	dir := t.TempDir()
	console := filepath.Join(dir, "console.log")
	os.WriteFile(console, []byte("panic\n"), 0o644)
	var stdout, stderr bytes.Buffer
	rc := agentctl([]string{"--addr", "unix://" + filepath.Join(dir, "none.sock"), "--timeout", "200ms", "gather", "-o", dir, "--console-log", console}, &stdout, &stderr)
	if rc != 0 {
		t.Fatalf("rc=%d %s", rc, stderr.String())
	}
	if !strings.Contains(stdout.String(), "agent: cannot reach the agent") {
		t.Errorf("output %q", stdout.String())
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "sandbox-gather-*.tar.gz"))
	if len(matches) != 1 {
		t.Fatalf("archives %v", matches)
	}
	if _, ok := archiveMembers(t, matches[0])["host/console.log"]; !ok {
		t.Errorf("archive %s lacks host/console.log", matches[0])
	}
}

func archiveMembers(t *testing.T, p string) map[string]string {
	t.Helper()
	_, m, err := gather.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
