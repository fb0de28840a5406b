// Command gofloor is the Go floor of `make bench`: a static Go PID 1 that
// serves only grpc.Health over ttrpc on vsock port 1024, and GetMetrics
// with its own memory. Booted with the agent's kernel and command line,
// "QEMU start -> Check SERVING" is what any agent written in Go with ttrpc
// takes at least (the Go runtime's start and the protocol packages'
// initialisation, with none of the agent's own work), and its memory is
// what such an agent holds before doing anything.
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

type health struct{}

func (health) Check(context.Context, *pb.CheckRequest) (*pb.HealthCheckResponse, error) {
	return &pb.HealthCheckResponse{Status: pb.HealthCheckResponse_SERVING}, nil
}

func (health) Version(context.Context, *pb.CheckRequest) (*pb.VersionCheckResponse, error) {
	return &pb.VersionCheckResponse{}, nil
}

// metrics answers GetMetrics with the process's VmRSS and RssAnon, under
// the agent's metric names; every other AgentService call is absent (the
// bench calls none).
type metrics struct {
	pb.AgentServiceService
	once sync.Once
}

func (m *metrics) GetMetrics(context.Context, *pb.GetMetricsRequest) (*pb.Metrics, error) {
	// Mounted only when asked: the boot row times the floor without it.
	m.once.Do(func() { _ = unix.Mount("proc", "/proc", "proc", 0, "") })
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			fmt.Fprintf(&out, "kata_agent_rss_bytes %d\n", kb*1024)
		case "RssAnon:":
			fmt.Fprintf(&out, "kata_agent_anon_rss_bytes %d\n", kb*1024)
		}
	}
	return &pb.Metrics{Metrics: out.String()}, nil
}

func main() {
	l, err := vsock.ListenContextID(unix.VMADDR_CID_ANY, 1024, nil)
	if err == nil {
		var s *ttrpc.Server
		if s, err = ttrpc.NewServer(); err == nil {
			pb.RegisterHealthService(s, health{})
			pb.RegisterAgentServiceService(s, &metrics{})
			err = s.Serve(context.Background(), l)
		}
	}
	if err != nil {
		os.Stderr.WriteString("gofloor: " + err.Error() + "\n")
	}
	// PID 1 must not exit: the kernel would panic.
	for {
		time.Sleep(time.Hour)
	}
}
