package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/version"
	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// startServer serves a fresh agent on a unix socket and returns a client.
func startServer(t *testing.T, opts Options) *agentclient.Client {
	t.Helper()
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := Listen(config.Addr{Scheme: "unix", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	c, err := agentclient.Dial(dctx, "unix://"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c
}

func TestHealth(t *testing.T) {
	c := startServer(t, Options{})
	ctx := context.Background()
	r, err := c.Health.Check(ctx, &pb.CheckRequest{})
	if err != nil || r.Status != pb.HealthCheckResponse_SERVING {
		t.Fatalf("Check = %v, %v", r, err)
	}
	v, err := c.Health.Version(ctx, &pb.CheckRequest{})
	if err != nil || v.AgentVersion != version.Version || v.GrpcVersion != version.APIVersion {
		t.Fatalf("Version = %v, %v", v, err)
	}
}

func TestUnimplementedNamesMethod(t *testing.T) {
	c := startServer(t, Options{})
	ctx := context.Background()
	// Methods no concern implements (SetPolicy, the MemAgent pair) and, with no
	// swap or storage manager configured, the swap and resize calls: the
	// fallback answers them.
	for name, call := range map[string]func() error{
		"SetPolicy":          func() error { _, err := c.Agent.SetPolicy(ctx, &pb.SetPolicyRequest{}); return err },
		"AddSwap":            func() error { _, err := c.Agent.AddSwap(ctx, &pb.AddSwapRequest{}); return err },
		"AddSwapPath":        func() error { _, err := c.Agent.AddSwapPath(ctx, &pb.AddSwapPathRequest{Path: "/dev/vdb"}); return err },
		"ResizeVolume":       func() error { _, err := c.Agent.ResizeVolume(ctx, &pb.ResizeVolumeRequest{}); return err },
		"MemAgentMemcgSet":   func() error { _, err := c.Agent.MemAgentMemcgSet(ctx, &pb.MemAgentMemcgConfig{}); return err },
		"MemAgentCompactSet": func() error { _, err := c.Agent.MemAgentCompactSet(ctx, &pb.MemAgentCompactConfig{}); return err },
	} {
		err := call()
		st, _ := status.FromError(err)
		if st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), name) {
			t.Errorf("%s: got %v, want Unimplemented naming the method", name, err)
		}
	}
	// The connection survives and keeps serving.
	if _, err := c.Health.Check(ctx, &pb.CheckRequest{}); err != nil {
		t.Fatalf("Check after errors: %v", err)
	}
}

func TestFallbackCoversEveryMethod(t *testing.T) {
	// Every AgentService method has an Unimplemented answer, so the
	// fallback alone satisfies the generated interface.
	var _ pb.AgentServiceService = unimplemented{}
}

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("container %q: %w", "a/b", errdefs.ErrInvalidArgument), codes.InvalidArgument},
		{fmt.Errorf("container x: %w", errdefs.ErrNotFound), codes.NotFound},
		{fmt.Errorf("container x: %w", errdefs.ErrAlreadyExists), codes.AlreadyExists},
		{fmt.Errorf("exec before start: %w", errdefs.ErrFailedPrecondition), codes.FailedPrecondition},
		{fmt.Errorf("no iptables: %w", errdefs.ErrNotImplemented), codes.Unimplemented},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{errors.New("plain"), codes.Internal},
		{status.Error(codes.Aborted, "already a status"), codes.Aborted},
	} {
		st, _ := status.FromError(toStatus(tc.err))
		if st.Code() != tc.code {
			t.Errorf("toStatus(%v) = %v, want %v", tc.err, st.Code(), tc.code)
		}
		if !strings.Contains(st.Message(), strings.TrimPrefix(tc.err.Error(), "rpc error: code = Aborted desc = ")) {
			t.Errorf("toStatus(%v) lost the message: %q", tc.err, st.Message())
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) != nil")
	}
}

func TestInterceptorRecoversPanic(t *testing.T) {
	ic := interceptor(slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, err := ic(context.Background(), func(any) error { return nil },
		&ttrpc.UnaryServerInfo{FullMethod: "/grpc.AgentService/Boom"},
		func(context.Context, func(any) error) (any, error) { panic("boom") })
	st, _ := status.FromError(err)
	if st.Code() != codes.Internal || !strings.Contains(st.Message(), "Boom") {
		t.Fatalf("panic became %v, want Internal naming the method", err)
	}
}

// lockedBuffer is a log destination the server's goroutines write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A failed request is logged at warn level with its method and the ids it
// names, so a failure the runtime reports can be found in the guest log.
func TestFailedRequestLoggedAtWarn(t *testing.T) {
	var out lockedBuffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := startServer(t, Options{Log: log})
	_, err := c.Agent.SignalProcess(context.Background(), &pb.SignalProcessRequest{ContainerId: "c1", ExecId: "e1", Signal: 9})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("SignalProcess: %v, want Unimplemented", err)
	}
	got := out.String()
	for _, want := range []string{"level=WARN", "msg=\"request failed\"", "method=/grpc.AgentService/SignalProcess", "container_id=c1", "exec_id=e1"} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q lacks %q", got, want)
		}
	}
}
