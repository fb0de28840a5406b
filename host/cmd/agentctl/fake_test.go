package main

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// fakeAgent serves only the methods a test gives it; ttrpc answers every
// other one Unimplemented. agentctl's tests check what it sends and how it
// prints the answers; the agent's behaviour behind them is tested in the
// agent's packages and, with the real server, in tests/integration.
type fakeAgent struct {
	mu   sync.Mutex
	reqs []any // every request received, in order
}

// requests returns the requests received so far.
func (f *fakeAgent) requests() []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]any(nil), f.reqs...)
}

// method makes a ttrpc method from a handler of one request type, recording
// each request.
func method[R any](f *fakeAgent, h func(*R) (any, error)) ttrpc.Method {
	return func(ctx context.Context, unmarshal func(any) error) (any, error) {
		req := new(R)
		if err := unmarshal(req); err != nil {
			return nil, err
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		return h(req)
	}
}

// serveFake serves the given grpc.AgentService methods and f's health
// service on a unix socket and returns agentctl's address for it.
func serveFake(t *testing.T, f *fakeAgent, agent map[string]ttrpc.Method) string {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterService("grpc.AgentService", &ttrpc.ServiceDesc{Methods: agent})
	srv.RegisterService("grpc.Health", &ttrpc.ServiceDesc{Methods: healthMethods(f)})
	path := filepath.Join(t.TempDir(), "a.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + path
}

// healthMethods answers Check with SERVING and Version with fixed versions.
func healthMethods(f *fakeAgent) map[string]ttrpc.Method {
	return map[string]ttrpc.Method{
		"Check": method(f, func(*pb.CheckRequest) (any, error) {
			return &pb.HealthCheckResponse{Status: pb.HealthCheckResponse_SERVING}, nil
		}),
		"Version": method(f, func(*pb.CheckRequest) (any, error) {
			return &pb.VersionCheckResponse{GrpcVersion: "0.0.7", AgentVersion: "9.8.7"}, nil
		}),
	}
}
