package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/containerd/ttrpc"

	"github.com/sandbox-guest/sandbox-guest/agent/hotplug"
	"github.com/sandbox-guest/sandbox-guest/agent/metrics"
	"github.com/sandbox-guest/sandbox-guest/agent/sandbox"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// fallback puts the Unimplemented answers one embedding level below the
// concern handlers (see the package comment).
type fallback struct{ unimplemented }

// agentService is the grpc.AgentService implementation: one embedded
// handler type per concern.
type agentService struct {
	fallback
	*containerHandlers
	*hotplugHandlers
	*storageHandlers
	*networkHandlers
}

var _ pb.AgentServiceService = (*agentService)(nil)

// Options configure a Server.
type Options struct {
	// Log receives request failures and panics. Defaults to slog.Default().
	Log *slog.Logger
	// Sandbox runs the pod's containers; nil leaves the container RPCs
	// unimplemented.
	Sandbox *sandbox.Sandbox
	// AfterDestroySandbox runs in its own goroutine after a successful
	// DestroySandbox; as PID 1, main shuts the server down (so the reply
	// is sent first), syncs and powers off.
	AfterDestroySandbox func()

	// Hotplug onlines CPUs and memory and reports memory hot-plug details;
	// nil answers OnlineCPUMem and MemHotplugByProbe NotImplemented.
	Hotplug *hotplug.Onliner
	// Metrics gathers GetMetrics; nil answers it NotImplemented.
	Metrics *metrics.Collector
	// AgentInfo is reported by GetGuestDetails.
	AgentInfo AgentInfo

	// Storage serves UpdateEphemeralMounts (a *storage.Manager).
	Storage EphemeralUpdater
	// CopyFileRoot confines CopyFile; defaults to
	// /run/kata-containers/shared/containers.
	CopyFileRoot string
	// SetTime and ReseedRandom default to the initsys system calls; tests
	// replace them.
	SetTime      func(sec, usec int64) error
	ReseedRandom func(data []byte) error

	// Network configures interfaces, routes, neighbours and iptables
	// (agent/network.Manager). Nil leaves those methods Unimplemented.
	Network Network
}

// Server serves the agent API on one listener.
type Server struct {
	log   *slog.Logger
	ttrpc *ttrpc.Server
	done  chan struct{}
}

// New builds a Server with every service registered.
func New(opts Options) (*Server, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	ts, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(interceptor(log)))
	if err != nil {
		return nil, fmt.Errorf("create ttrpc server: %w", err)
	}
	svc := &agentService{
		containerHandlers: newContainerHandlers(opts),
		hotplugHandlers:   newHotplugHandlers(opts, log),
		storageHandlers:   newStorageHandlers(opts),
		networkHandlers:   &networkHandlers{net: opts.Network},
	}
	pb.RegisterAgentServiceService(ts, svc)
	pb.RegisterHealthService(ts, healthService{})
	return &Server{log: log, ttrpc: ts, done: make(chan struct{})}, nil
}

// Serve accepts connections on l until ctx ends or Shutdown is called.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.ttrpc.Serve(ctx, l) }()
	select {
	case err := <-errc:
		if errors.Is(err, ttrpc.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		_ = s.ttrpc.Close()
		<-errc
		return nil
	case <-s.done:
		_ = s.ttrpc.Close()
		<-errc
		return nil
	}
}

// Shutdown stops serving: Serve returns once in-flight replies are sent.
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	return s.ttrpc.Shutdown(ctx)
}
