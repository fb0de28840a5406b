package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// The host-integration and end-to-end tests read a real container's
// message; these cover the answers that need no container.
func TestGetDiagnosticDataRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	c := startServer(t, Options{})
	_, err := c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: "x"})
	wantStatus(t, err, codes.Unimplemented, "method GetDiagnosticData is not implemented")

	c = startServer(t, Options{Sandbox: testSandbox(t)})
	_, err = c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{LogType: "kernel_log", ContainerId: "x"})
	wantStatus(t, err, codes.InvalidArgument, `log type "kernel_log" is not supported`)
	_, err = c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{ContainerId: "x"})
	wantStatus(t, err, codes.InvalidArgument, `log type "" is not supported`)
	_, err = c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{LogType: strings.Repeat("z", 1<<20)})
	wantStatus(t, err, codes.InvalidArgument, "zzz...")
	_, err = c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: "nope"})
	wantStatus(t, err, codes.NotFound, `container "nope"`)
	_, err = c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: "../etc"})
	wantStatus(t, err, codes.InvalidArgument, `container "../etc"`)
}
