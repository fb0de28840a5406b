// Command gofloor is the Go floor of the boot row in `make bench`: a static
// Go PID 1 that serves only grpc.Health over ttrpc on vsock port 1024.
// Booted with the agent's kernel and command line, "QEMU start -> Check
// SERVING" is what any agent written in Go with ttrpc takes at least:
// the Go runtime's start and the protocol packages' initialisation, with
// none of the agent's own work.
package main

import (
	"context"
	"os"
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

func main() {
	l, err := vsock.ListenContextID(unix.VMADDR_CID_ANY, 1024, nil)
	if err == nil {
		var s *ttrpc.Server
		if s, err = ttrpc.NewServer(); err == nil {
			pb.RegisterHealthService(s, health{})
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
