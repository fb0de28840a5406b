package main

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

func TestHotplugCommands(t *testing.T) {
	f := &fakeAgent{}
	addr := serveFake(t, f, map[string]ttrpc.Method{
		"OnlineCPUMem": method(f, func(*pb.OnlineCPUMemRequest) (any, error) { return &emptypb.Empty{}, nil }),
		"MemHotplugByProbe": method(f, func(r *pb.MemHotplugByProbeRequest) (any, error) {
			for _, a := range r.MemHotplugProbeAddr {
				if a%0x8000000 != 0 {
					return nil, errors.New("memory probe address is not aligned to the block size: invalid argument")
				}
			}
			return &emptypb.Empty{}, nil
		}),
		"GetGuestDetails": method(f, func(*pb.GuestDetailsRequest) (any, error) {
			return &pb.GuestDetailsResponse{MemBlockSizeBytes: 0x8000000, SupportMemHotplugProbe: true, AgentDetails: &pb.AgentDetails{
				Version: "1.2.3", StorageHandlers: []string{"virtio-fs", "9p"}, ExtraFeatures: []string{"fips"},
			}}, nil
		}),
		"GetMetrics": method(f, func(*pb.GetMetricsRequest) (any, error) {
			return &pb.Metrics{Metrics: "# TYPE kata_agent_goroutines gauge\nkata_agent_goroutines 2\n"}, nil
		}),
	})
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		rc := agentctl(append([]string{"--addr", addr}, args...), &stdout, &stderr)
		return rc, stdout.String(), stderr.String()
	}
	last := func() proto.Message {
		rs := f.requests()
		return rs[len(rs)-1].(proto.Message)
	}

	if rc, _, stderr := run("online-mem", "--cpus", "1"); rc != 0 {
		t.Fatalf("online-mem rc=%d: %s", rc, stderr)
	}
	if want := (&pb.OnlineCPUMemRequest{Wait: true, NbCpus: 1}); !proto.Equal(last(), want) {
		t.Errorf("online-mem sent %v, want %v", last(), want)
	}
	if rc, _, stderr := run("online-mem", "extra"); rc != 1 || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Errorf("online-mem extra: rc=%d stderr=%q", rc, stderr)
	}

	rc, stdout, stderr := run("guest-details")
	if rc != 0 {
		t.Fatalf("guest-details rc=%d: %s", rc, stderr)
	}
	if want := (&pb.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true}); !proto.Equal(last(), want) {
		t.Errorf("guest-details sent %v, want %v", last(), want)
	}
	for _, line := range []string{
		"mem_block_size: 128 MiB (0x8000000)",
		"support_mem_hotplug_probe: true",
		"version: 1.2.3",
		"storage_handlers: virtio-fs,9p",
		"extra_features: fips",
	} {
		if !strings.Contains(stdout, line+"\n") {
			t.Errorf("guest-details lacks %q:\n%s", line, stdout)
		}
	}

	if rc, _, stderr := run("mem-probe", "0x108000000", "4429185024"); rc != 0 {
		t.Fatalf("mem-probe rc=%d: %s", rc, stderr)
	}
	if got := last().(*pb.MemHotplugByProbeRequest).MemHotplugProbeAddr; !slices.Equal(got, []uint64{0x108000000, 0x108000000}) {
		t.Errorf("mem-probe sent %#x", got)
	}
	if rc, _, stderr := run("mem-probe", "0x108000001"); rc != 1 || !strings.Contains(stderr, "not aligned") {
		t.Errorf("unaligned mem-probe: rc=%d stderr=%q", rc, stderr)
	}
	n := len(f.requests())
	if rc, _, stderr := run("mem-probe", "lots"); rc != 1 || !strings.Contains(stderr, `address "lots"`) {
		t.Errorf("bad mem-probe address: rc=%d stderr=%q", rc, stderr)
	}
	if len(f.requests()) != n {
		t.Error("a bad address was sent to the agent")
	}

	rc, stdout, stderr = run("metrics")
	if rc != 0 {
		t.Fatalf("metrics rc=%d: %s", rc, stderr)
	}
	if stdout != "# TYPE kata_agent_goroutines gauge\nkata_agent_goroutines 2\n" {
		t.Errorf("metrics output:\n%s", stdout)
	}
}
