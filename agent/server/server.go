package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/sandbox"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// fallback puts the Unimplemented answers one embedding level below the
// concern handlers (see the package comment).
type fallback struct{ unimplemented }

// agentService is the grpc.AgentService implementation: one embedded
// service per group of calls, each either its handlers or, when the agent
// has nothing to serve it with, unimplemented (chosen once, in New).
type agentService struct {
	fallback
	containerService
	hotplugService
	guestService
	metricsService
	fileService
	storageService
	systemService
	networkService
	swapService
}

var _ pb.AgentServiceService = (*agentService)(nil)

// Options configure a Server. A nil service leaves its calls
// Unimplemented.
type Options struct {
	// Log receives request failures and panics. Defaults to slog.Default().
	Log *slog.Logger
	// Sandbox runs the pod's containers (the sandbox, container, process,
	// stdio and diagnostic calls).
	Sandbox *sandbox.Sandbox
	// StopAfterDestroy makes a successful DestroySandbox the end of
	// serving: once the host has taken the reply, the server closes every
	// connection and Serve returns; as PID 1, main then syncs and powers
	// off.
	StopAfterDestroy bool
	// Streams hands out stream-port connections (agent.passfd_listener_port);
	// nil refuses requests that name stream ports.
	Streams *container.StreamBroker
	// AgentLog serves GetDiagnosticData "agent_log" (a *logging.Ring);
	// nil refuses it.
	AgentLog AgentLog

	// Hotplug onlines CPUs and memory and reports memory hot-plug details
	// in GetGuestDetails (a *hotplug.Onliner).
	Hotplug Hotplug
	// Metrics gathers GetMetrics (a *metrics.Collector).
	Metrics Metrics
	// AgentInfo is reported by GetGuestDetails.
	AgentInfo AgentInfo

	// Storage serves UpdateEphemeralMounts and GetVolumeStats (a
	// *storage.Manager).
	Storage Storage
	// CopyFileRoot confines CopyFile (always served); defaults to
	// guestpath.SharedDir.
	CopyFileRoot string
	// System sets the clock and reseeds the entropy pool.
	System System

	// Network configures interfaces, routes, neighbours and iptables
	// (agent/network.Manager).
	Network Network

	// Swap serves AddSwap and AddSwapPath (a *swap.Manager).
	Swap Swap
}

// Timings of the stop after DestroySandbox (or when Serve's context ends).
const (
	// flushTimeout bounds the wait for the host to take the bytes written
	// to a connection before it is closed.
	flushTimeout = 3 * time.Second
	// flushPoll is how often the unsent byte count is looked at.
	flushPoll = 5 * time.Millisecond
	// lingerFallback is how long a close waits when the kernel cannot
	// count unsent bytes.
	lingerFallback = 100 * time.Millisecond
	// stopGrace is how long in-flight requests have to answer once the
	// server stops; connections still busy then are closed.
	stopGrace = 2 * time.Second
	// destroyFallback stops the server after a successful DestroySandbox
	// whose reply was never seen going out (a request framed in a way the
	// connection watcher does not follow): the VM powers off regardless.
	destroyFallback = 10 * time.Second
)

// Server serves the agent API on one listener.
type Server struct {
	log              *slog.Logger
	ttrpc            *ttrpc.Server
	stdio            stdioReader // nil: ReadStdout/ReadStderr left to ttrpc (stdio.go)
	stdioWork        *workerPool
	stopAfterDestroy bool

	flushTimeout, stopGrace, destroyFallback time.Duration

	stopOnce sync.Once
	done     chan struct{} // closed when the server is to stop

	mu    sync.Mutex
	conns map[*trackedConn]bool
}

// New builds a Server with every service registered.
func New(opts Options) (*Server, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		log: log, stopAfterDestroy: opts.StopAfterDestroy,
		flushTimeout: flushTimeout, stopGrace: stopGrace, destroyFallback: destroyFallback,
		done: make(chan struct{}), conns: map[*trackedConn]bool{},
		stdioWork: newWorkerPool(stdioWorkerIdle),
	}
	ts, err := ttrpc.NewServer(ttrpc.WithChainUnaryServerInterceptor(interceptor(log), s.watchDestroy))
	if err != nil {
		return nil, fmt.Errorf("create ttrpc server: %w", err)
	}
	svc := newAgentService(opts, log)
	if h, ok := svc.containerService.(*containerHandlers); ok {
		s.stdio = h
	}
	pb.RegisterAgentServiceService(ts, svc)
	pb.RegisterHealthService(ts, healthService{})
	s.ttrpc = ts
	return s, nil
}

// Serve accepts connections on l until ctx ends, or until the host took
// the reply to a successful DestroySandbox when StopAfterDestroy is set.
// It returns once every connection is closed, after the bytes written to
// each were taken by the host (bounded by flushTimeout).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.ttrpc.Serve(ctx, &trackingListener{Listener: l, srv: s}) }()
	var err error
	select {
	case err = <-errc:
		if errors.Is(err, ttrpc.ErrServerClosed) {
			err = nil
		}
		s.shutdown()
		return err
	case <-ctx.Done():
	case <-s.done:
	}
	s.shutdown()
	<-errc
	return nil
}

// shutdown stops accepting, gives in-flight requests stopGrace to answer,
// then closes every connection; each close first lets the host take what
// was written.
func (s *Server) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), s.stopGrace)
	err := s.waitResponsesWritten(ctx)
	if err == nil {
		err = s.ttrpc.Shutdown(ctx)
	}
	cancel()
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("requests still in flight when the server stopped; closing their connections", "grace", s.stopGrace)
	}
	_ = s.ttrpc.Close()
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Close()
		}()
	}
	wg.Wait()
}

// waitResponsesWritten waits until every request read on every connection
// has had its response written, or ctx ends. It polls: it runs only while
// the server stops.
func (s *Server) waitResponsesWritten(ctx context.Context) error {
	for {
		s.mu.Lock()
		busy := false
		for c := range s.conns {
			if !c.idle() {
				busy = true
				break
			}
		}
		s.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(flushPoll):
		}
	}
}

func (s *Server) stop() { s.stopOnce.Do(func() { close(s.done) }) }

func (s *Server) track(c *trackedConn) {
	s.mu.Lock()
	s.conns[c] = true
	s.mu.Unlock()
}

func (s *Server) untrack(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// destroyReplied runs when the reply to a successful DestroySandbox has
// been written to c: the server stops once the host has taken it.
func (s *Server) destroyReplied(c *trackedConn) {
	if !s.stopAfterDestroy {
		return
	}
	go func() {
		s.flush(c.Conn)
		s.log.Info("sandbox destroyed and the host has the reply; stopping")
		s.stop()
	}()
}

// watchDestroy is the last interceptor: after a successful DestroySandbox
// it arms the fallback stop, in case its reply is never seen going out.
func (s *Server) watchDestroy(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (interface{}, error) {
	resp, err := method(ctx, unmarshal)
	if err == nil && s.stopAfterDestroy && info.FullMethod == "/"+destroyService+"/"+destroyMethod {
		time.AfterFunc(s.destroyFallback, func() {
			select {
			case <-s.done:
			default:
				s.log.Warn("the DestroySandbox reply was not seen going out; stopping anyway", "after", s.destroyFallback)
				s.stop()
			}
		})
	}
	return resp, err
}
