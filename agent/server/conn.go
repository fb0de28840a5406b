package server

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// ttrpc's framing (github.com/containerd/ttrpc, channel.go): a 10-byte
// header (payload length and stream id, big-endian uint32s, then the
// message type and flags bytes), then the payload.
const (
	frameHeaderLen = 10
	frameRequest   = 1
	frameResponse  = 2
	frameData      = 3
	// frameIgnored is a message type ttrpc does not know: it drops such
	// frames on odd (client) stream ids and refuses them on even ones.
	frameIgnored = 0
	// framePeek is how much of a payload is kept to name a request's
	// method or read a response's status code: the service and method
	// names, and the status code, come first on the wire.
	framePeek = 96
)

const (
	agentServiceName = "grpc.AgentService"
	destroyService   = agentServiceName
	destroyMethod    = "DestroySandbox"
)

// frameScanner follows the ttrpc frames of one direction of a connection.
type frameScanner struct {
	hdr  [frameHeaderLen]byte
	nhdr int
	left uint32 // payload bytes of the current frame still to come
	size uint32 // payload length of the current frame
	id   uint32
	typ  byte
	peek []byte
	// ignoreData turns data frames into frameIgnored ones as they pass
	// (on the receiving side). The agent serves no streaming method, and
	// ttrpc v1.2 dereferences a nil stream when a data frame names a
	// unary call in flight, which would take PID 1 down.
	ignoreData bool
}

// scan follows p and calls done for every frame that ends in it, with the
// frame's first framePeek payload bytes. With ignoreData it rewrites the
// type byte of data frame headers in p.
func (f *frameScanner) scan(p []byte, done func(id uint32, typ byte, peek []byte)) {
	for len(p) > 0 {
		if f.nhdr < frameHeaderLen {
			n := copy(f.hdr[f.nhdr:], p)
			if f.ignoreData && f.nhdr <= 8 && 8 < f.nhdr+n && f.hdr[8] == frameData {
				p[8-f.nhdr], f.hdr[8] = frameIgnored, frameIgnored
			}
			f.nhdr += n
			p = p[n:]
			if f.nhdr < frameHeaderLen {
				return
			}
			f.left = binary.BigEndian.Uint32(f.hdr[0:4])
			f.size = f.left
			f.id = binary.BigEndian.Uint32(f.hdr[4:8])
			f.typ = f.hdr[8]
			f.peek = f.peek[:0]
		}
		n := len(p)
		if uint64(n) > uint64(f.left) {
			n = int(f.left)
		}
		if room := framePeek - len(f.peek); room > 0 {
			f.peek = append(f.peek, p[:min(n, room)]...)
		}
		p = p[n:]
		f.left -= uint32(n)
		if f.left == 0 {
			f.nhdr = 0
			done(f.id, f.typ, f.peek)
		}
	}
}

// requestMethod reads the service and method names from the start of a
// ttrpc Request (service = 1, method = 2). Names cut off by the peek come
// back empty.
func requestMethod(b []byte) (service, method string) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return
		}
		b = b[n:]
		switch num {
		case 1:
			service = string(v)
		case 2:
			method = string(v)
		}
	}
	return
}

// responseOK reports whether the start of a ttrpc Response carries status
// code 0 (status = 1, its code = 1; an absent status or code is 0).
func responseOK(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return false // cut off: the status comes first, so none
			}
			b = b[n:]
			continue
		}
		// The status message, possibly cut off by the peek: its code is
		// its first field when not zero.
		l, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return false
		}
		st := b[n:]
		if uint64(len(st)) > l {
			st = st[:l]
		}
		if l == 0 {
			return true
		}
		num, typ, n = protowire.ConsumeTag(st)
		if n < 0 {
			return false
		}
		if num != 1 {
			return true
		}
		if typ != protowire.VarintType {
			return false
		}
		code, n := protowire.ConsumeVarint(st[n:])
		return n > 0 && code == 0
	}
	return true
}

// trackedConn is a host connection as the server sees it: it notices the
// reply to a successful DestroySandbox going out, and its Close first lets
// the host take what was written (bounded), so that nothing written before
// power-off is lost in the guest's socket.
type trackedConn struct {
	net.Conn
	srv *Server

	rd frameScanner // Read runs in ttrpc's one receive goroutine
	in io.Reader    // what Read reads: the connection, or an intake taking stdio calls

	// ctx is the stdio path's calls' context (as ttrpc's connection
	// context for its calls): cancelled when reading fails or on Close.
	ctx    context.Context
	cancel context.CancelFunc

	// wmu orders the writers: ttrpc's one sending goroutine (ttrpc's
	// channel.send, through Write) and the stdio path's (writeFrame).
	wmu     sync.Mutex
	wcond   *sync.Cond // signalled when a Write returns; on wmu
	out     frameWriter
	wbroken bool // a write failed or the connection closed: no frame boundary to wait for

	mu       sync.Mutex
	wr       frameScanner
	destroys map[uint32]bool // streams carrying a DestroySandbox request
	// pending counts requests read whose response has not been written.
	// ttrpc's own idle tracking is refreshed only when its connection
	// loop wakes, so it can call a connection with a pending long poll
	// idle; the server's stop waits on this count instead.
	pending int

	closeOnce sync.Once
	closeErr  error
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.in.Read(p)
	if err != nil {
		c.cancel()
	}
	c.rd.scan(p[:n], func(id uint32, typ byte, peek []byte) {
		if !answered(typ, id, c.rd.size) {
			return
		}
		c.mu.Lock()
		c.pending++
		if typ != frameRequest {
			c.mu.Unlock()
			return
		}
		if svc, m := requestMethod(peek); svc == destroyService && m == destroyMethod {
			c.destroys[id] = true
		}
		c.mu.Unlock()
	})
	return n, err
}

// answered reports whether ttrpc (v1.2) answers a frame the host sent:
// a request always; any frame on a server-side (even) stream id or longer
// than its 4 MiB limit with an error. Other frames (data frames once
// ignoreData turned them, unknown types) get no answer, and counting them
// would keep the server's stop waiting; not counting the answered ones
// would let their answers stand for a request still in flight.
func answered(typ byte, id, size uint32) bool {
	return typ == frameRequest || id%2 == 0 || size > ttrpcMaxMessage
}

// ttrpcMaxMessage is ttrpc's limit on a message's length.
const ttrpcMaxMessage = 4 << 20

func (c *trackedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	n, err := c.out.write(c.Conn, p) // coalesce.go
	if err != nil {
		c.wbroken = true
	}
	c.wcond.Broadcast()
	c.wmu.Unlock()
	replied := false
	c.mu.Lock()
	c.wr.scan(p[:n], func(id uint32, typ byte, peek []byte) {
		if typ != frameResponse {
			return
		}
		if c.pending > 0 {
			c.pending--
		}
		if c.destroys[id] {
			delete(c.destroys, id)
			replied = replied || responseOK(peek)
		}
	})
	c.mu.Unlock()
	if replied {
		// The reply is in the socket now; the server stops once the host
		// has taken it.
		c.srv.destroyReplied(c)
	}
	return n, err
}

// take is the intake's offer of a request frame: a stdio call is served
// by the stdio path.
func (c *trackedConn) take(id uint32, payload []byte) bool {
	r := parseStdioRequest(payload)
	if r == nil {
		return false
	}
	c.mu.Lock()
	c.pending++
	c.mu.Unlock()
	if !c.serveStdioNow(id, r) {
		c.srv.stdioWork.run(func() { c.serveStdio(id, r) })
	}
	return true
}

// refuse answers, as ttrpc would, a request reusing a taken stream id.
func (c *trackedConn) refuse(id uint32) {
	c.mu.Lock()
	c.pending++
	c.mu.Unlock()
	go func() { _ = c.writeFrame(refusalFrame(id)) }()
}

// writeFrame writes one whole response frame of the stdio path once
// ttrpc's writer is between frames (a frame's head that the coalescing
// writer holds back is not on the connection yet). It reports whether the
// whole frame was written; not after a write on the connection failed.
func (c *trackedConn) writeFrame(frame []byte) bool {
	c.wmu.Lock()
	for !c.wbroken && !c.out.betweenFrames() {
		c.wcond.Wait()
	}
	sent := false
	if !c.wbroken {
		_, err := c.Conn.Write(frame)
		sent = err == nil
		c.wbroken = !sent
	}
	c.wcond.Broadcast()
	c.wmu.Unlock()
	c.mu.Lock()
	if c.pending > 0 {
		c.pending--
	}
	c.mu.Unlock()
	return sent
}

// idle reports whether every request read on c has had its response
// written.
func (c *trackedConn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending == 0
}

// Close waits (bounded) until the host has taken what was written, then
// closes. Every caller returns once the connection is closed.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.srv.flush(c.Conn)
		c.closeErr = c.Conn.Close()
		c.wmu.Lock()
		c.wbroken = true
		c.wcond.Broadcast()
		c.wmu.Unlock()
		c.srv.untrack(c)
	})
	return c.closeErr
}

// flush waits until the host has taken every byte written to conn: the
// virtio device consumed it from the queue (vsock), or the peer read it
// (unix socket). It gives up after flushTimeout: a host that stops reading
// must not keep the guest from powering off.
func (s *Server) flush(conn net.Conn) {
	deadline := time.Now().Add(s.flushTimeout)
	for {
		n, err := unsentBytes(conn)
		switch {
		case errors.Is(err, net.ErrClosed):
			return
		case err != nil:
			// The kernel cannot tell: give the bytes a moment.
			time.Sleep(min(lingerFallback, s.flushTimeout))
			return
		case n == 0:
			return
		}
		if !time.Now().Before(deadline) {
			s.log.Warn("closing a connection whose bytes the host has not taken", "unsent", n, "waited", s.flushTimeout)
			return
		}
		time.Sleep(flushPoll)
	}
}

func newTrackedConn(c net.Conn, srv *Server) *trackedConn {
	tc := &trackedConn{Conn: c, srv: srv, in: c, destroys: map[uint32]bool{}}
	tc.rd.ignoreData = true
	tc.wcond = sync.NewCond(&tc.wmu)
	tc.ctx, tc.cancel = context.WithCancel(context.Background())
	if srv.stdio != nil {
		tc.in = &frameIntake{r: c, take: tc.take, refuse: tc.refuse}
	}
	return tc
}

// trackingListener hands ttrpc trackedConns.
type trackingListener struct {
	net.Listener
	srv *Server
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := newTrackedConn(c, l.srv)
	l.srv.track(tc)
	return tc, nil
}
