package hvsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
)

// Backend serves one vhost-user-vsock front-end (one QEMU) and the hybrid
// vsock socket of its guest.
type Backend struct {
	guestCID uint64
	udsPath  string
	opts     options
	vhostLn  *net.UnixListener
	hostLn   *net.UnixListener

	mu      sync.Mutex
	closed  bool
	serving bool
	front   *net.UnixConn // the accepted front-end connection
	mux     *mux
	done    chan struct{} // closed when Close is called
}

// Listen creates the vhost-user socket QEMU connects to and the hybrid vsock
// socket host clients connect to. The guest's CID is what GET_CONFIG reports.
// Stale socket files nobody listens on are replaced.
func Listen(vhostSocket, udsPath string, guestCID uint64, opts ...Option) (*Backend, error) {
	if guestCID < 3 || guestCID >= 0xffffffff {
		return nil, fmt.Errorf("guest CID %d: must be in 3..%d", guestCID, uint32(0xfffffffe))
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	vln, err := listenUnix(vhostSocket)
	if err != nil {
		return nil, fmt.Errorf("vhost-user socket: %w", err)
	}
	hln, err := listenUnix(udsPath)
	if err != nil {
		_ = vln.Close()
		return nil, fmt.Errorf("hybrid vsock socket: %w", err)
	}
	return &Backend{guestCID: guestCID, udsPath: udsPath, opts: o, vhostLn: vln, hostLn: hln, done: make(chan struct{})}, nil
}

// listenUnix listens on path, removing a leftover socket file first if no
// one answers on it.
func listenUnix(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		c, err := net.Dial("unix", path)
		if err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("listen %s: %w", path, syscall.EADDRINUSE)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return ln, nil
}

// Serve waits for the front-end to connect and serves it until it
// disconnects (nil), ctx ends (ctx.Err()) or Close is called (ErrClosed).
// Host clients are accepted from the start; their connections wait for the
// guest driver up to the connect timeout. Every stream is closed on return.
// Serve can be called once.
func (b *Backend) Serve(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if b.serving {
		b.mu.Unlock()
		return errors.New("hvsock: Serve called twice")
	}
	b.serving = true
	b.mu.Unlock()

	log := b.opts.log
	m := newMux(muxConfig{
		guestCID: b.guestCID, udsPath: b.udsPath, bufAlloc: b.opts.bufAlloc, maxToGuest: b.opts.maxToGuest,
		connectTimeout: b.opts.connectTimeout, dial: b.opts.dial, log: log,
	})
	b.mu.Lock()
	b.mux = m
	b.mu.Unlock()
	hs := &hostSide{ln: b.hostLn, mux: m, timeout: b.opts.connectTimeout}
	hs.start()
	dev := newDevice(log, m)
	defer func() {
		hs.close()
		dev.shutdown()
		m.close()
	}()

	// Unblock Accept and the message loop on cancellation or Close.
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	defer watcher.Wait()
	defer close(stop)
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		select {
		case <-ctx.Done():
		case <-b.done:
		case <-stop:
			return
		}
		_ = b.vhostLn.Close()
		b.mu.Lock()
		if b.front != nil {
			_ = b.front.Close()
		}
		b.mu.Unlock()
	}()

	front, err := b.vhostLn.AcceptUnix()
	if err != nil {
		return b.exitErr(ctx, fmt.Errorf("accept front-end: %w", err))
	}
	// One front-end per backend: stop listening (and unlink the socket).
	_ = b.vhostLn.Close()
	b.mu.Lock()
	b.front = front
	closed := b.closed || ctx.Err() != nil
	b.mu.Unlock()
	defer front.Close()
	if closed {
		return b.exitErr(ctx, nil)
	}
	log.Info("vsock: front-end connected", "guest_cid", b.guestCID)
	err = dev.serveVhost(front, b.guestCID)
	log.Info("vsock: front-end gone", "err", err)
	return b.exitErr(ctx, err)
}

// exitErr picks Serve's result: cancellation and Close win over the error
// their teardown caused.
func (b *Backend) exitErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	select {
	case <-b.done:
		return ErrClosed
	default:
	}
	return err
}

// Close stops the backend: Serve returns and both sockets are removed.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	close(b.done)
	errV := b.vhostLn.Close()
	errH := b.hostLn.Close()
	if errors.Is(errV, net.ErrClosed) {
		errV = nil
	}
	if errors.Is(errH, net.ErrClosed) {
		errH = nil
	}
	if b.front != nil {
		_ = b.front.Close()
	}
	return errors.Join(errV, errH)
}
