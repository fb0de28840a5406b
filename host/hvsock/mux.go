package hvsock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"
)

const (
	maxQueuedRST   = 1024      // RSTs owed for unknown streams; more are dropped
	maxStreams     = 4096      // open streams; more are refused
	firstLocalPort = 1 << 30   // host ports handed to host-initiated streams
	hostReadChunk  = 32 * 1024 // one read from a host connection
)

// ErrClosed reports use of a backend that has shut down.
var ErrClosed = errors.New("vsock backend closed")

// muxConfig carries the mux's tunables.
type muxConfig struct {
	guestCID       uint64
	udsPath        string
	bufAlloc       uint32 // our receive window per stream (guest -> host)
	maxToGuest     int    // host bytes buffered per stream before reading stops
	connectTimeout time.Duration
	dial           func(ctx context.Context, path string) (net.Conn, error)
	log            *slog.Logger
}

// mux is the vsock connection table: it routes guest packets to streams,
// produces the packets the guest is owed, and runs the goroutines that splice
// each stream to its host Unix connection.
type mux struct {
	muxConfig

	mu       sync.Mutex
	conns    map[connKey]*conn
	ready    []*conn  // streams with a packet to send, round robin
	rsts     []header // RSTs for streams we do not know
	nextPort uint32
	closed   bool
	work     chan struct{} // poked when a packet becomes ready
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
	timers   map[*conn]*time.Timer
}

func newMux(cfg muxConfig) *mux {
	ctx, cancel := context.WithCancel(context.Background())
	return &mux{
		muxConfig: cfg,
		conns:     make(map[connKey]*conn),
		nextPort:  firstLocalPort,
		work:      make(chan struct{}, 1),
		ctx:       ctx,
		cancel:    cancel,
		timers:    make(map[*conn]*time.Timer),
	}
}

func (m *mux) signal() {
	select {
	case m.work <- struct{}{}:
	default:
	}
}

func (m *mux) markReady(c *conn) {
	if !c.inReady && c.hasWork() {
		c.inReady = true
		m.ready = append(m.ready, c)
		m.signal()
	}
}

func (m *mux) queueRST(h header) {
	if len(m.rsts) >= maxQueuedRST {
		m.log.Debug("vsock: too many pending resets, dropping one", "src_port", h.SrcPort, "dst_port", h.DstPort)
		return
	}
	m.rsts = append(m.rsts, h)
	m.signal()
}

// replyRST answers a guest packet with RST.
func (m *mux) replyRST(h header) {
	m.queueRST(header{
		SrcCID: HostCID, DstCID: m.guestCID, SrcPort: h.DstPort, DstPort: h.SrcPort,
		Type: typeStream, Op: opRst,
	})
}

// drop forgets c and closes its host connection without telling the guest.
func (m *mux) drop(c *conn) {
	if c.state == stateClosed {
		return
	}
	c.state = stateClosed
	delete(m.conns, c.key)
	if t := m.timers[c]; t != nil {
		t.Stop()
		delete(m.timers, c)
	}
	if c.host != nil {
		_ = c.host.Close()
	}
	c.toGuest.reset()
	c.toHost.reset()
	c.cond.Broadcast()
}

// reset drops c and sends the guest an RST for it.
func (m *mux) reset(c *conn, reason string) {
	if c.state == stateClosed {
		return
	}
	m.log.Debug("vsock: reset stream", "stream", c.key, "state", c.state, "reason", reason)
	m.queueRST(header{
		SrcCID: HostCID, DstCID: m.guestCID, SrcPort: c.key.local, DstPort: c.key.peer,
		Type: typeStream, Op: opRst, BufAlloc: m.bufAlloc, FwdCnt: c.fwdCnt,
	})
	m.drop(c)
}

// maybeFinish closes a stream once both directions are finished: the host
// side has nothing more to send (or the guest will not take it) and the guest
// side has shut its sending half with every byte written to the host.
func (m *mux) maybeFinish(c *conn) {
	if c.state != stateEstablished {
		return
	}
	hostDone := c.shutdownSent || c.peerShutRcv
	guestDone := c.peerShutSend && c.writeClosed
	if hostDone && guestDone {
		m.reset(c, "both directions shut down")
	}
}

// hasWork reports whether fill would produce a packet.
func (m *mux) hasWork() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rsts) > 0 || len(m.ready) > 0
}

// fill writes the next packet for the guest into dst and returns its length,
// or 0 if no packet is due. len(dst) must be at least hdrLen.
func (m *mux) fill(dst []byte) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rsts) > 0 {
		m.rsts[0].put(dst)
		m.rsts = m.rsts[1:]
		if len(m.rsts) == 0 {
			m.rsts = nil
		}
		return hdrLen
	}
	for len(m.ready) > 0 {
		c := m.ready[0]
		m.ready[0] = nil
		m.ready = m.ready[1:]
		c.inReady = false
		n := c.emit(m, dst)
		m.markReady(c)
		if n > 0 {
			return n
		}
		if c.inReady {
			// c still has work that does not fit in dst (data into a
			// header-sized buffer); leave it for the next buffer.
			return 0
		}
	}
	return 0
}

// handleGuest processes one packet the guest sent on the tx queue. payload is
// only valid during the call.
func (m *mux) handleGuest(h header, payload []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if h.SrcCID != m.guestCID || h.DstCID != HostCID {
		m.log.Debug("vsock: dropping packet with foreign address", "src_cid", h.SrcCID, "dst_cid", h.DstCID, "op", opName(h.Op))
		return
	}
	if int(h.Len) != len(payload) {
		m.log.Debug("vsock: dropping packet whose length disagrees with its buffer", "len", h.Len, "buffer", len(payload))
		return
	}
	key := connKey{local: h.DstPort, peer: h.SrcPort}
	c := m.conns[key]
	if h.Type != typeStream {
		if h.Op != opRst {
			m.replyRST(h)
		}
		if c != nil {
			m.reset(c, "packet of non-stream type")
		}
		return
	}
	if c == nil {
		m.guestNoStream(key, h)
		return
	}
	c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	if c.creditRequested && c.credit() > 0 {
		c.creditRequested = false // the stall is over
	}
	live := true
	switch c.state {
	case stateConnecting:
		live = m.guestConnecting(c, h)
	case stateDialing:
		if h.Op == opRst {
			m.drop(c)
		} else {
			m.reset(c, "unexpected "+opName(h.Op)+" before RESPONSE")
		}
		live = false
	case stateEstablished:
		live = m.guestEstablished(c, h, payload)
	}
	if live {
		m.markReady(c)
	}
}

// guestNoStream handles a packet for a stream that does not exist: only a
// REQUEST opens one (while there is room). m.mu is held.
func (m *mux) guestNoStream(key connKey, h header) {
	switch h.Op {
	case opRequest:
		if len(m.conns) >= maxStreams {
			m.log.Debug("vsock: too many streams, refusing guest connection", "stream", key)
			m.replyRST(h)
			return
		}
		m.acceptGuest(key, h)
	case opRst:
	default:
		m.replyRST(h)
	}
}

// guestConnecting handles the guest's answer to a host-initiated stream.
// It reports whether c is still open. m.mu is held.
func (m *mux) guestConnecting(c *conn, h header) bool {
	switch h.Op {
	case opResponse:
		c.state = stateEstablished
		if t := m.timers[c]; t != nil {
			t.Stop()
			delete(m.timers, c)
		}
		c.cond.Broadcast() // the writer owes the host its OK line
		return true
	case opRst:
		m.log.Debug("vsock: guest refused stream", "stream", c.key)
		m.drop(c)
	default:
		m.reset(c, "unexpected "+opName(h.Op)+" while connecting")
	}
	return false
}

// guestEstablished handles a packet on an established stream. It reports
// whether c is still open. m.mu is held.
func (m *mux) guestEstablished(c *conn, h header, payload []byte) bool {
	switch h.Op {
	case opRW:
		if c.peerShutSend {
			m.reset(c, "data after SHUTDOWN(send)")
			return false
		}
		if uint64(c.toHost.len())+uint64(len(payload)) > uint64(m.bufAlloc) {
			m.reset(c, fmt.Sprintf("guest overran credit: %d queued + %d", c.toHost.len(), len(payload)))
			return false
		}
		if len(payload) > 0 {
			c.toHost.write(payload)
			c.cond.Broadcast()
		}
	case opCreditUpdate:
	case opCreditRequest:
		c.needCreditUpdate = true
	case opShutdown:
		if h.Flags&shutdownRcv != 0 && !c.peerShutRcv {
			c.peerShutRcv = true
			c.toGuest.reset()
			c.cond.Broadcast()
		}
		if h.Flags&shutdownSend != 0 && !c.peerShutSend {
			c.peerShutSend = true
			c.cond.Broadcast()
		}
		m.maybeFinish(c)
	case opRst:
		m.log.Debug("vsock: guest reset stream", "stream", c.key)
		m.drop(c)
		return false
	default:
		m.reset(c, "unexpected "+opName(h.Op)+" on an established stream")
		return false
	}
	return true
}

// acceptGuest starts a guest-initiated stream: dial the host listener for the
// port, then answer RESPONSE or RST.
func (m *mux) acceptGuest(key connKey, h header) {
	c := &conn{key: key, state: stateDialing, cond: sync.NewCond(&m.mu), peerBufAlloc: h.BufAlloc, peerFwdCnt: h.FwdCnt}
	m.conns[key] = c
	path := m.udsPath + "_" + strconv.FormatUint(uint64(key.local), 10)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, m.connectTimeout)
		nc, err := m.dial(ctx, path)
		cancel()
		m.mu.Lock()
		defer m.mu.Unlock()
		if c.state != stateDialing {
			if nc != nil {
				_ = nc.Close()
			}
			return
		}
		if err != nil {
			m.reset(c, fmt.Sprintf("no host listener: %v", err))
			return
		}
		c.host = nc
		c.state = stateEstablished
		c.needResponse = true
		m.startIO(c)
		m.markReady(c)
	}()
}

// connectHost starts a host-initiated stream to the guest port and hands nc
// to it. The caller has consumed the CONNECT line.
func (m *mux) connectHost(nc net.Conn, port uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if len(m.conns) >= maxStreams {
		return fmt.Errorf("connect to guest port %d: %d streams open", port, len(m.conns))
	}
	var key connKey
	for tries := 0; ; tries++ {
		if tries > 1<<16 {
			return fmt.Errorf("connect to guest port %d: no free host port", port)
		}
		key = connKey{local: m.nextPort, peer: port}
		m.nextPort++
		if m.nextPort < firstLocalPort {
			m.nextPort = firstLocalPort
		}
		if m.conns[key] == nil {
			break
		}
	}
	c := &conn{key: key, state: stateConnecting, hostInitiated: true, host: nc, cond: sync.NewCond(&m.mu), needRequest: true}
	m.conns[key] = c
	m.timers[c] = time.AfterFunc(m.connectTimeout, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if c.state == stateConnecting {
			m.reset(c, "guest did not answer REQUEST in time")
		}
	})
	m.startIO(c)
	m.markReady(c)
	return nil
}

// startIO starts the goroutines copying between c and its host connection.
func (m *mux) startIO(c *conn) {
	m.wg.Add(2)
	go m.hostReader(c, c.host)
	go m.hostWriter(c, c.host)
}

// hostReader copies host bytes into c.toGuest, at most maxToGuest at a time.
func (m *mux) hostReader(c *conn, nc net.Conn) {
	defer m.wg.Done()
	buf := make([]byte, hostReadChunk)
	for {
		m.mu.Lock()
		for c.state != stateClosed && c.toGuest.len() >= m.maxToGuest {
			c.cond.Wait()
		}
		closed := c.state == stateClosed
		m.mu.Unlock()
		if closed {
			return
		}
		n, err := nc.Read(buf)
		m.mu.Lock()
		if c.state == stateClosed {
			m.mu.Unlock()
			return
		}
		if n > 0 && !c.peerShutRcv {
			c.toGuest.write(buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				m.log.Debug("vsock: host read", "stream", c.key, "err", err)
			}
			c.hostEOF = true
		}
		m.markReady(c)
		m.maybeFinish(c)
		m.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// hostWriter copies guest bytes from c.toHost to the host connection and
// returns credit to the guest as the host consumes them.
func (m *mux) hostWriter(c *conn, nc net.Conn) {
	defer m.wg.Done()
	m.mu.Lock()
	for c.state == stateConnecting {
		c.cond.Wait()
	}
	if c.state == stateClosed {
		m.mu.Unlock()
		return
	}
	if c.hostInitiated {
		m.mu.Unlock()
		_, err := io.WriteString(nc, "OK "+strconv.FormatUint(uint64(c.key.local), 10)+"\n")
		m.mu.Lock()
		if err != nil {
			m.reset(c, fmt.Sprintf("write OK to host: %v", err))
		}
	}
	defer m.mu.Unlock()
	for {
		for c.state == stateEstablished && c.toHost.len() == 0 && !(c.peerShutSend && !c.writeClosed) {
			c.cond.Wait()
		}
		if c.state != stateEstablished {
			return
		}
		if c.toHost.len() == 0 {
			// The guest shut its sending half and everything is written.
			c.writeClosed = true
			if cw, ok := nc.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			m.maybeFinish(c)
			return
		}
		data := c.toHost.take(c.spare)
		c.spare = nil
		m.mu.Unlock()
		_, err := nc.Write(data)
		m.mu.Lock()
		if c.state != stateEstablished {
			return
		}
		c.spare = data[:0]
		if err != nil {
			m.reset(c, fmt.Sprintf("write to host: %v", err))
			return
		}
		c.fwdCnt += uint32(len(data))
		// Tell the guest about freed room before it runs dry, not after.
		if c.fwdCnt-c.lastFwdSent >= m.bufAlloc/4 {
			c.needCreditUpdate = true
			m.markReady(c)
		}
	}
}

// resetAll drops every stream without telling the guest: the device stopped.
func (m *mux) resetAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.conns {
		m.drop(c)
	}
	m.ready = nil
	m.rsts = nil
}

// close drops every stream, refuses new ones and waits for the stream
// goroutines to finish.
func (m *mux) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.resetAll()
	m.wg.Wait()
}
