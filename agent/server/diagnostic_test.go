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

type fixedLog string

func (f fixedLog) Text() string { return string(f) }

// The agent's own log types: served without a container, refused with
// one, and refused clearly when the agent keeps no ring.
func TestGetDiagnosticDataAgentTypes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	c := startServer(t, Options{Sandbox: testSandbox(t), AgentLog: fixedLog(`{"msg":"one"}` + "\n")})
	r, err := c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{LogType: "agent_log"})
	if err != nil || r.GetData() != `{"msg":"one"}`+"\n" {
		t.Fatalf("agent_log = %q, %v", r.GetData(), err)
	}
	_, err = c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{LogType: "agent_log", ContainerId: "x"})
	wantStatus(t, err, codes.InvalidArgument, "takes no container id")
	r, err = c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{LogType: "agent_containers"})
	if err != nil || r.GetData() != "[]" {
		t.Fatalf("agent_containers of an empty sandbox = %q, %v", r.GetData(), err)
	}
	_, err = c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{LogType: "agent_containers", ContainerId: "x"})
	wantStatus(t, err, codes.InvalidArgument, "takes no container id")

	c = startServer(t, Options{Sandbox: testSandbox(t)})
	_, err = c.Agent.GetDiagnosticData(ctx, &pb.GetDiagnosticDataRequest{LogType: "agent_log"})
	wantStatus(t, err, codes.FailedPrecondition, "keeps no log lines")
}
