package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/agent/device"
	"github.com/sandbox-guest/sandbox-guest/agent/network"
	"github.com/sandbox-guest/sandbox-guest/agent/sandbox"
	"github.com/sandbox-guest/sandbox-guest/agent/storage"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

func wantStatus(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code || !strings.Contains(st.Message(), substr) {
		t.Fatalf("got %v, want %v containing %q", err, code, substr)
	}
}

func testSandbox(t *testing.T) *sandbox.Sandbox {
	dir := t.TempDir()
	sb, err := sandbox.New(sandbox.Config{
		BundleRoot: dir + "/bundles", SandboxDir: dir + "/sandbox", SharedDir: dir + "/shared", StateRoot: dir + "/state",
		Storage: storage.New(storage.Config{Root: dir + "/kata"}), Devices: &device.Resolver{Waiter: &device.Waiter{}},
		WriteResolvConf: network.WriteResolvConf,
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

func TestContainersDisabledWithoutSandbox(t *testing.T) {
	c := startServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "x"})
	wantStatus(t, err, codes.Unimplemented, "method CreateContainer is not implemented")
	_, err = c.Agent.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "x"})
	wantStatus(t, err, codes.Unimplemented, "method ReadStdout is not implemented")
}

// TestContainerRequestValidation covers the checks made before anything is
// created; the host-integration tests cover the rest with real containers.
func TestContainerRequestValidation(t *testing.T) {
	c := startServer(t, Options{Sandbox: testSandbox(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	spec := &pb.Spec{Root: &pb.Root{Path: "/"}, Process: &pb.Process{Args: []string{"true"}}}

	_, err := c.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "a/b", OCI: spec})
	wantStatus(t, err, codes.InvalidArgument, `container "a/b": id contains "/"`)
	_, err = c.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "ok", ExecId: "other", OCI: spec})
	wantStatus(t, err, codes.InvalidArgument, "must equal the container id")
	_, err = c.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "ok"})
	wantStatus(t, err, codes.InvalidArgument, "no OCI spec")
	_, err = c.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "ok", OCI: spec, StdoutPort: 1025})
	wantStatus(t, err, codes.Unimplemented, "vsock ports")
	_, err = c.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: "nope"})
	wantStatus(t, err, codes.NotFound, `container "nope"`)
	_, err = c.Agent.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: "nope", Signal: 99})
	wantStatus(t, err, codes.InvalidArgument, "signal 99 out of range")
	_, err = c.Agent.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: "nope", ExecId: "x\x00"})
	wantStatus(t, err, codes.NotFound, `container "nope"`)
	_, err = c.Agent.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: "nope", ExecId: "e"})
	wantStatus(t, err, codes.InvalidArgument, "no process")
	_, err = c.Agent.UpdateContainer(ctx, &pb.UpdateContainerRequest{ContainerId: ".."})
	wantStatus(t, err, codes.InvalidArgument, `contains ".."`)
	_, err = c.Agent.CreateSandbox(ctx, &pb.CreateSandboxRequest{Hostname: strings.Repeat("h", 65)})
	wantStatus(t, err, codes.InvalidArgument, "longer than 64")
	_, err = c.Agent.CreateSandbox(ctx, &pb.CreateSandboxRequest{KernelModules: []*pb.KernelModule{{Name: "x"}}})
	wantStatus(t, err, codes.Unimplemented, "kernel modules")

	// GetOOMEvent is a long poll that ends with the caller's deadline.
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	_, err = c.Agent.GetOOMEvent(short, &pb.GetOOMEventRequest{})
	if st, _ := status.FromError(err); !errors.Is(err, context.DeadlineExceeded) && st.Code() != codes.DeadlineExceeded {
		t.Fatalf("GetOOMEvent with nothing to report: %v, want deadline exceeded", err)
	}
}
