package container

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// Stream ports: runtimes that support them (upstream's passfd I/O) open
// one vsock connection per stdio stream to the agent's stream listener
// (agent.passfd_listener_port) before CreateContainer/ExecProcess, and
// name each connection in the request by its host-side port, the peer
// port the agent sees on accept. The agent gives the connected socket to
// the process as that stdio fd, so output goes to the host at socket
// speed without the agent copying it; the host reads until EOF (every
// holder of the fd closed it) and half-closes stdin to end the input.

// streamWait bounds how long a request waits for a named connection the
// listener has not accepted yet (the host connects before it sends the
// request, but accept may lag); upstream waits 3 x 100 ms.
const streamWait = 300 * time.Millisecond

// maxPendingStreams bounds the connections accepted and not yet claimed:
// a host that connects and never names them must not exhaust fds.
const maxPendingStreams = 256

// Streams are connected sockets to use as a process's stdio instead of
// pipes; a nil field keeps the pipe for that stream.
type Streams struct {
	Stdin, Stdout, Stderr *os.File
}

// Close closes every stream (after the start they are the process's).
func (s Streams) Close() {
	for _, f := range []*os.File{s.Stdin, s.Stdout, s.Stderr} {
		if f != nil {
			_ = f.Close()
		}
	}
}

func (s Streams) any() bool { return s.Stdin != nil || s.Stdout != nil || s.Stderr != nil }

// StreamBroker accepts stream connections and hands them to the request
// that names their peer port.
type StreamBroker struct {
	mu      sync.Mutex
	pending map[uint32]*os.File
	arrived chan struct{} // closed and replaced on each accept
	closed  bool
}

// NewStreamBroker serves l until it is closed. Its connections must have
// a *vsock.Addr peer (tests give unix sockets one).
func NewStreamBroker(l net.Listener) *StreamBroker {
	b := &StreamBroker{pending: map[uint32]*os.File{}, arrived: make(chan struct{})}
	go b.serve(l)
	return b
}

func (b *StreamBroker) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			b.mu.Lock()
			b.closed = true
			for port, f := range b.pending {
				_ = f.Close()
				delete(b.pending, port)
			}
			b.mu.Unlock()
			return
		}
		b.add(c)
	}
}

func (b *StreamBroker) add(c net.Conn) {
	defer c.Close()
	peer, ok := c.RemoteAddr().(*vsock.Addr)
	if !ok {
		return
	}
	f, err := blockingFile(c)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, dup := b.pending[peer.Port]; dup {
		_ = old.Close() // the host reused the port: the old one is stale
	} else if len(b.pending) >= maxPendingStreams {
		_ = f.Close()
		return
	}
	b.pending[peer.Port] = f
	close(b.arrived)
	b.arrived = make(chan struct{})
}

// blockingFile duplicates a connection's socket as a blocking fd, as a
// process expects its stdio to be (Go's own fd is non-blocking; the flag
// lives on the shared file description, and the conn is closed after).
func blockingFile(c net.Conn) (*os.File, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("connection %T has no fd", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	if err := unix.SetNonblock(nfd, false); err != nil {
		_ = unix.Close(nfd)
		return nil, err
	}
	return os.NewFile(uintptr(nfd), "stream"), nil
}

// Take claims the connections named by the request's ports (0: that
// stream uses a pipe), waiting streamWait at most for each.
func (b *StreamBroker) Take(ctx context.Context, stdin, stdout, stderr uint32) (Streams, error) {
	var s Streams
	ctx, cancel := context.WithTimeout(ctx, streamWait)
	defer cancel()
	for _, w := range []struct {
		port uint32
		f    **os.File
		name string
	}{{stdin, &s.Stdin, "stdin"}, {stdout, &s.Stdout, "stdout"}, {stderr, &s.Stderr, "stderr"}} {
		if w.port == 0 {
			continue
		}
		f, err := b.take(ctx, w.port)
		if err != nil {
			s.Close()
			return Streams{}, fmt.Errorf("%s stream port %d: %w", w.name, w.port, err)
		}
		*w.f = f
	}
	return s, nil
}

func (b *StreamBroker) take(ctx context.Context, port uint32) (*os.File, error) {
	for {
		b.mu.Lock()
		f, ok := b.pending[port]
		delete(b.pending, port)
		arrived, closed := b.arrived, b.closed
		b.mu.Unlock()
		if ok {
			return f, nil
		}
		if closed {
			return nil, fmt.Errorf("the stream listener is closed: %w", errdefs.ErrUnavailable)
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return nil, fmt.Errorf("no connection from that port: %w", errdefs.ErrInvalidArgument)
		}
	}
}
