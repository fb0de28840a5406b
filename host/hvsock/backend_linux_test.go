package hvsock

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// hostConnect dials the hybrid socket and completes the guest's side of the
// handshake: it waits for REQUEST and answers RESPONSE from sock.
func hostConnect(t testing.TB, g *simGuest, r *router, guestPort, bufAlloc uint32) (net.Conn, *simSock) {
	t.Helper()
	type res struct {
		c    net.Conn
		line string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		c, line, err := g.dialHost(guestPort)
		ch <- res{c, line, err}
	}()
	req := r.expect(t, "REQUEST", func(p simPkt) bool { return p.h.Op == opRequest && p.h.DstPort == guestPort })
	if req.h.SrcCID != HostCID || req.h.DstCID != simGuestCID || req.h.Type != typeStream || req.h.BufAlloc == 0 {
		t.Fatalf("REQUEST header %+v", req.h)
	}
	s := newSimSock(g, guestPort, req.h.SrcPort, bufAlloc)
	s.peerBufAlloc, s.peerFwdCnt = req.h.BufAlloc, req.h.FwdCnt
	r.add(s)
	g.sendPkt(s.hdr(opResponse), nil)
	got := <-ch
	if got.err != nil {
		t.Fatalf("host connect: %v", got.err)
	}
	if got.line != "OK "+strconv.FormatUint(uint64(req.h.SrcPort), 10) {
		t.Fatalf("host got %q, want OK %d", got.line, req.h.SrcPort)
	}
	return got.c, s
}

func TestHandshakeAndCleanExit(t *testing.T) {
	check := goroutineBaseline(t)
	g := newSimGuest(t, nil)
	g.connect()
	// A host client mid-handshake and an idle stream must not keep Serve alive.
	idle, err := net.Dial("unix", g.uds)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	r := g.route()
	hc, _ := hostConnect(t, g, r, 1024, 256<<10)
	defer hc.Close()

	g.stopGuest()
	_ = g.front.Close()
	select {
	case err := <-g.serve:
		if err != nil {
			t.Fatalf("Serve after front-end disconnect: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the front-end disconnected")
	}
	g.serve <- nil // Serve's result for cleanup
	_ = hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := hc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("host stream after exit: read err %v, want EOF", err)
	}
	g.cleanup()
	check()
}

// transfer moves n random bytes each way at once over an established stream
// and compares checksums.
func transfer(t testing.TB, hc net.Conn, s *simSock, n int) {
	t.Helper()
	toGuest := randBytes(t, n)
	toHost := randBytes(t, n)
	var wg sync.WaitGroup
	var hostGot []byte
	var readErr error
	wg.Add(3)
	go func() {
		defer wg.Done()
		if _, err := hc.Write(toGuest); err != nil {
			t.Errorf("host write: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		hostGot = make([]byte, n)
		_ = hc.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, readErr = io.ReadFull(hc, hostGot)
		_ = hc.SetReadDeadline(time.Time{})
	}()
	go func() {
		defer wg.Done()
		s.write(toHost)
	}()
	s.waitFor("guest to receive all data", 30*time.Second, func() bool { return len(s.in) >= n })
	wg.Wait()
	if readErr != nil {
		t.Fatalf("host read: %v", readErr)
	}
	s.mu.Lock()
	guestGot := append([]byte(nil), s.in[:n]...)
	s.in = s.in[n:]
	s.mu.Unlock()
	if sha256.Sum256(guestGot) != sha256.Sum256(toGuest) {
		t.Fatalf("host->guest: checksum mismatch over %d bytes", n)
	}
	if sha256.Sum256(hostGot) != sha256.Sum256(toHost) {
		t.Fatalf("guest->host: checksum mismatch over %d bytes", n)
	}
}

func testHostConnect(t *testing.T, opts ...simOpt) {
	check := goroutineBaseline(t)
	g := newSimGuest(t, nil, opts...)
	g.connect()
	r := g.route()
	hc, s := hostConnect(t, g, r, 1024, 256<<10)
	defer hc.Close()
	transfer(t, hc, s, 1<<20)

	// Orderly close from the host: SHUTDOWN(send) reaches the guest, the
	// guest closes too and the backend finishes with RST.
	_ = hc.(*net.UnixConn).CloseWrite()
	s.waitFor("SHUTDOWN from host", 5*time.Second, func() bool { return s.peerShut&shutdownSend != 0 })
	h := s.hdr(opShutdown)
	h.Flags = shutdownSend | shutdownRcv
	g.sendPkt(h, nil)
	s.waitFor("RST after both sides shut down", 5*time.Second, func() bool { return s.rst })
	_ = hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := hc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("host read after close: %v, want EOF", err)
	}
	if n := g.b.numConnsForTest(); n != 0 {
		t.Fatalf("%d streams left", n)
	}
	g.cleanup()
	check()
}

func TestHostConnectData(t *testing.T)        { testHostConnect(t) }
func TestHostConnectDataSplitRx(t *testing.T) { testHostConnect(t, withSplitRx()) }

func TestRxPacketsFitBuffers(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	r := g.route()
	hc, s := hostConnect(t, g, r, 1024, 1<<20)
	defer hc.Close()
	if _, err := hc.Write(randBytes(t, 100000)); err != nil {
		t.Fatal(err)
	}
	s.waitFor("data", 10*time.Second, func() bool { return len(s.in) == 100000 })
	s.mu.Lock()
	defer s.mu.Unlock()
	// rxLoop checked len == used length for every packet; here every packet
	// must also have fit a 3776-byte buffer, so at least 27 were needed.
	if s.ops[opRW] < 100000/(simRxBufLen-hdrLen) {
		t.Fatalf("%d RW packets for 100000 bytes in %d-byte buffers", s.ops[opRW], simRxBufLen)
	}
}

func TestGuestConnect(t *testing.T) {
	check := goroutineBaseline(t)
	g := newSimGuest(t, nil)
	ln, err := net.Listen("unix", g.uds+"_5000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g.connect()
	r := g.route()
	s := newSimSock(g, 40000, 5000, 256<<10)
	r.add(s)
	g.sendPkt(s.hdr(opRequest), nil)
	hc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	s.waitFor("RESPONSE", 5*time.Second, func() bool { return s.ops[opResponse] == 1 })
	transfer(t, hc, s, 1<<20)

	// The guest resets: the host connection ends.
	g.sendPkt(s.hdr(opRst), nil)
	_ = hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := hc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("host read after guest RST: %v, want EOF", err)
	}
	g.cleanup()
	check()
}

func TestGuestConnectNoListener(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	g.sendPkt(header{SrcPort: 40001, DstPort: 6000, Op: opRequest, BufAlloc: 65536}, nil)
	p := g.expectOp(opRst)
	if p.h.SrcPort != 6000 || p.h.DstPort != 40001 || p.h.DstCID != simGuestCID || p.h.SrcCID != HostCID {
		t.Fatalf("RST header %+v", p.h)
	}
	if n := g.b.numConnsForTest(); n != 0 {
		t.Fatalf("%d streams left", n)
	}
}

func TestHostConnectRefused(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	done := make(chan error, 1)
	go func() {
		_, line, err := g.dialHost(7000)
		if err == nil {
			err = fmt.Errorf("got %q", line)
		}
		done <- err
	}()
	req := g.expectOp(opRequest)
	g.sendPkt(header{SrcPort: req.h.DstPort, DstPort: req.h.SrcPort, Op: opRst}, nil)
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("host client: %v, want EOF without OK", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("host connection not closed after the guest refused")
	}
}

func TestHostConnectTimeout(t *testing.T) {
	g := newSimGuest(t, []Option{WithConnectTimeout(300 * time.Millisecond)})
	g.connect()
	start := time.Now()
	_, _, err := g.dialHost(7001)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("host client: %v, want EOF", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the timeout", d)
	}
	g.expectOp(opRequest)
	p := g.expectOp(opRst)
	if p.h.DstPort != 7001 {
		t.Fatalf("RST for port %d", p.h.DstPort)
	}
}

func TestBadConnectLine(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	for _, line := range []string{"HELLO 5\n", "CONNECT x\n", "CONNECT 99999999999\n", strings.Repeat("C", 200)} {
		c, err := net.Dial("unix", g.uds)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, line)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		// Closing with our bytes unread may show as a reset instead of EOF.
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%q: read %v, want EOF", line, err)
		}
		c.Close()
	}
	g.noPkt(100 * time.Millisecond)
}

func TestCreditStallAndResume(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	r := g.route()
	const window = 8192
	hc, s := hostConnect(t, g, r, 1024, window)
	defer hc.Close()
	s.mu.Lock()
	s.hold = true
	s.mu.Unlock()
	data := randBytes(t, 40000)
	go func() { _, _ = hc.Write(data) }()
	s.waitFor("a full window", 5*time.Second, func() bool { return len(s.in) == window && s.ops[opCreditRequest] == 1 })
	time.Sleep(200 * time.Millisecond)
	s.mu.Lock()
	if len(s.in) != window || s.ops[opCreditRequest] != 1 {
		t.Fatalf("stalled stream: %d bytes, %d credit requests; want %d and 1", len(s.in), s.ops[opCreditRequest], window)
	}
	s.mu.Unlock()
	// Resume, stall again once, resume for good.
	s.release()
	s.waitFor("second window", 5*time.Second, func() bool { return len(s.in) == 2*window && s.ops[opCreditRequest] == 2 })
	s.mu.Lock()
	s.hold = false
	s.mu.Unlock()
	s.release()
	s.waitFor("everything", 10*time.Second, func() bool { return len(s.in) == len(data) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if !bytes.Equal(s.in, data) {
		t.Fatal("data mismatch after stalls")
	}
	if n := s.ops[opCreditRequest]; n > 2+len(data)/window {
		t.Fatalf("%d credit requests for %d stalls at most", n, 2+len(data)/window)
	}
}

func TestGuestRespectsBackendCredit(t *testing.T) {
	const window = 16384
	g := newSimGuest(t, []Option{WithReceiveBuffer(window)})
	g.connect()
	r := g.route()
	hc, s := hostConnect(t, g, r, 1024, 256<<10)
	defer hc.Close()
	if s.peerBufAlloc != window {
		t.Fatalf("backend advertises %d, want %d", s.peerBufAlloc, window)
	}
	// The host does not read: the guest fills the window and the host
	// socket's buffer, then must stall on credit.
	data := randBytes(t, 4<<20)
	wrote := make(chan struct{})
	go func() { s.write(data); close(wrote) }()
	time.Sleep(500 * time.Millisecond)
	s.mu.Lock()
	sent, resets := s.txCnt, s.rst
	s.mu.Unlock()
	if sent >= uint32(len(data)) || resets {
		t.Fatalf("guest sent %d of %d bytes (reset %v) to a host that reads nothing", sent, len(data), resets)
	}
	got := make([]byte, len(data))
	_ = hc.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(hc, got); err != nil {
		t.Fatal(err)
	}
	<-wrote
	if !bytes.Equal(got, data) {
		t.Fatal("data mismatch")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ops[opCreditUpdate] == 0 {
		t.Fatal("backend never sent CREDIT_UPDATE")
	}
}

func TestGuestOverrunGetsRST(t *testing.T) {
	g := newSimGuest(t, []Option{WithReceiveBuffer(8192)})
	g.connect()
	r := g.route()
	hc, s := hostConnect(t, g, r, 1024, 256<<10)
	defer hc.Close()
	// Ignore the credit: 3 x 4096 > 8192 while the host reads nothing.
	// (The host writer may drain some into the socket buffer, so keep
	// sending until the backend resets.)
	big := make([]byte, 60000)
	for i := 0; i < 64 && !s.isReset(); i++ {
		g.sendPkt(s.hdr(opRW), big)
	}
	s.waitFor("RST for overrun", 5*time.Second, func() bool { return s.rst })
}

func (s *simSock) isReset() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rst
}

func TestHalfCloseGuestFirst(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	r := g.route()
	hc, s := hostConnect(t, g, r, 1024, 256<<10)
	defer hc.Close()
	s.write([]byte("request"))
	h := s.hdr(opShutdown)
	h.Flags = shutdownSend
	g.sendPkt(h, nil)
	got, err := io.ReadAll(hc)
	if err != nil || string(got) != "request" {
		t.Fatalf("host read %q, %v; want \"request\" then EOF", got, err)
	}
	// The host still answers over its open half.
	if _, err := hc.Write([]byte("response")); err != nil {
		t.Fatal(err)
	}
	s.waitFor("response", 5*time.Second, func() bool { return string(s.in) == "response" })
	_ = hc.(*net.UnixConn).CloseWrite()
	s.waitFor("SHUTDOWN then RST", 5*time.Second, func() bool { return s.peerShut&shutdownSend != 0 && s.rst })
}

func TestHalfCloseHostFirst(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	r := g.route()
	hc, s := hostConnect(t, g, r, 1024, 256<<10)
	defer hc.Close()
	if _, err := hc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = hc.(*net.UnixConn).CloseWrite()
	s.waitFor("data then SHUTDOWN", 5*time.Second, func() bool { return string(s.in) == "ping" && s.peerShut == shutdownSend })
	s.write([]byte("pong"))
	buf := make([]byte, 4)
	_ = hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(hc, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("host read %q, %v", buf, err)
	}
	s.mu.Lock()
	if s.rst {
		t.Fatal("RST while the guest half is open")
	}
	s.mu.Unlock()
	h := s.hdr(opShutdown)
	h.Flags = shutdownSend | shutdownRcv
	g.sendPkt(h, nil)
	s.waitFor("RST", 5*time.Second, func() bool { return s.rst })
	if _, err := hc.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("host read after close: %v", err)
	}
}

func TestUnknownStreamGetsRST(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	g.sendPkt(header{SrcPort: 1, DstPort: 2, Op: opRW}, []byte("x"))
	p := g.expectOp(opRst)
	if p.h.SrcPort != 2 || p.h.DstPort != 1 {
		t.Fatalf("RST %+v", p.h)
	}
	// Non-stream types are refused, RST to unknown streams is ignored.
	g.sendPkt(header{SrcPort: 3, DstPort: 4, Op: opRequest, Type: typeSeqpacket}, nil)
	g.expectOp(opRst)
	g.sendPkt(header{SrcPort: 5, DstPort: 6, Op: opRst}, nil)
	g.noPkt(100 * time.Millisecond)
}

func TestManyStreams(t *testing.T) {
	check := goroutineBaseline(t)
	g := newSimGuest(t, nil)
	g.connect()
	r := g.route()
	const streams = 24
	var wg sync.WaitGroup
	conns := make([]net.Conn, streams)
	socks := make([]*simSock, streams)
	for i := range conns {
		conns[i], socks[i] = hostConnect(t, g, r, uint32(2000+i), 128<<10)
	}
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			transfer(t, conns[i], socks[i], 64<<10)
		}()
	}
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	g.cleanup()
	check()
}

func TestServeContextCancel(t *testing.T) {
	check := goroutineBaseline(t)
	dir := t.TempDir()
	b, err := Listen(dir+"/v.sock", dir+"/u.sock", 3, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve ignored cancellation")
	}
	_ = b.Close()
	check()
}

func TestListenValidates(t *testing.T) {
	dir := t.TempDir()
	if _, err := Listen(dir+"/v", dir+"/u", 2); err == nil {
		t.Fatal("guest CID 2 accepted")
	}
	b, err := Listen(dir+"/v", dir+"/u", 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(dir+"/v", dir+"/u2", 3); err == nil {
		t.Fatal("second backend on a live socket accepted")
	}
	_ = b.Close()
}

func TestResetOwnerDropsStreams(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	r := g.route()
	hc, _ := hostConnect(t, g, r, 1024, 256<<10)
	defer hc.Close()
	g.mustCall(reqResetOwner, nil)
	_ = hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := hc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("host stream after RESET_OWNER: %v, want EOF", err)
	}
	// The device negotiates again from scratch.
	g.send(reqGetFeatures, 0, nil)
	g.recvReply(reqGetFeatures)
	if st := g.call(reqSetVringNum, state(0, 64)); st != 0 {
		t.Fatalf("SET_VRING_NUM after reset: status %d", st)
	}
}

func TestGuestShutdownReceive(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	r := g.route()
	hc, s := hostConnect(t, g, r, 1024, 256<<10)
	defer hc.Close()
	h := s.hdr(opShutdown)
	h.Flags = shutdownRcv
	g.sendPkt(h, nil)
	time.Sleep(50 * time.Millisecond)
	if _, err := hc.Write(randBytes(t, 10000)); err != nil {
		t.Fatal(err)
	}
	// The guest still sends; the host still receives.
	s.write([]byte("still here"))
	buf := make([]byte, 10)
	_ = hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(hc, buf); err != nil || string(buf) != "still here" {
		t.Fatalf("host read %q, %v", buf, err)
	}
	time.Sleep(100 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ops[opRW] != 0 || len(s.in) != 0 {
		t.Fatalf("guest that shut down receiving got %d RW packets", s.ops[opRW])
	}
}

func TestGuestProtocolViolationsReset(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(g *simGuest, s *simSock)
	}{
		{"data after SHUTDOWN(send)", func(g *simGuest, s *simSock) {
			h := s.hdr(opShutdown)
			h.Flags = shutdownSend
			g.sendPkt(h, nil)
			g.sendPkt(s.hdr(opRW), []byte("late"))
		}},
		{"REQUEST on an open stream", func(g *simGuest, s *simSock) { g.sendPkt(s.hdr(opRequest), nil) }},
		{"RESPONSE on an open stream", func(g *simGuest, s *simSock) { g.sendPkt(s.hdr(opResponse), nil) }},
		{"unknown op", func(g *simGuest, s *simSock) { g.sendPkt(s.hdr(42), nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newSimGuest(t, nil)
			g.connect()
			r := g.route()
			hc, s := hostConnect(t, g, r, 1024, 256<<10)
			defer hc.Close()
			tc.send(g, s)
			s.waitFor("RST", 5*time.Second, func() bool { return s.rst })
			_ = hc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(hc); err != nil {
				t.Fatalf("host stream not closed cleanly: %v", err)
			}
			if n := g.b.numConnsForTest(); n != 0 {
				t.Fatalf("%d streams left", n)
			}
		})
	}
}
