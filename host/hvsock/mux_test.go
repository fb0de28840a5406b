package hvsock

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

func testMux(t *testing.T) *mux {
	m := newMux(muxConfig{
		guestCID: 3, udsPath: "/nonexistent", bufAlloc: 4096, maxToGuest: 4096, connectTimeout: 5 * time.Second,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		dial: func(ctx context.Context, path string) (net.Conn, error) {
			return nil, errors.New("no listener")
		},
	})
	t.Cleanup(m.close)
	return m
}

// next fills a buffer of size bytes and decodes the packet.
func next(t *testing.T, m *mux, size int) (header, []byte, bool) {
	t.Helper()
	buf := make([]byte, size)
	n := m.fill(buf)
	if n == 0 {
		return header{}, nil, false
	}
	h, err := parseHeader(buf[:n])
	if err != nil || int(h.Len) != n-hdrLen {
		t.Fatalf("bad packet of %d bytes: %+v %v", n, h, err)
	}
	return h, buf[hdrLen:n], true
}

func waitWork(t *testing.T, m *mux) {
	t.Helper()
	for i := 0; i < 500 && !m.hasWork(); i++ {
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMuxCreditAndSmallBuffers(t *testing.T) {
	m := testMux(t)
	hostEnd, backendEnd := net.Pipe()
	defer hostEnd.Close()
	if err := m.connectHost(backendEnd, 1234); err != nil {
		t.Fatal(err)
	}
	req, _, ok := next(t, m, hdrLen)
	if !ok || req.Op != opRequest || req.DstPort != 1234 || req.SrcPort != firstLocalPort {
		t.Fatalf("first packet %+v", req)
	}
	g := header{SrcCID: 3, DstCID: HostCID, SrcPort: 1234, DstPort: req.SrcPort, Type: typeStream, BufAlloc: 100}
	g.Op = opResponse
	m.handleGuest(g, nil)
	ok1 := make([]byte, 64)
	n, _ := hostEnd.Read(ok1)
	if string(ok1[:n]) != "OK 1073741824\n" {
		t.Fatalf("host got %q", ok1[:n])
	}

	go func() { _, _ = hostEnd.Write(make([]byte, 150)) }()
	waitWork(t, m)
	// A header-sized buffer cannot carry data, and must not trigger a
	// credit request while credit remains.
	if h, _, ok := next(t, m, hdrLen); ok {
		t.Fatalf("packet %s in a header-sized buffer", opName(h.Op))
	}
	total := 0
	for total < 100 {
		h, p, ok := next(t, m, 1000)
		if !ok || h.Op != opRW {
			t.Fatalf("want data, got %+v", h)
		}
		total += len(p)
	}
	if total != 100 {
		t.Fatalf("sent %d bytes on a 100-byte credit", total)
	}
	if h, _, ok := next(t, m, 1000); !ok || h.Op != opCreditRequest {
		t.Fatalf("want one CREDIT_REQUEST, got %+v", h)
	}
	// The guest answers without new credit: no second request.
	g.Op, g.FwdCnt = opCreditUpdate, 0
	m.handleGuest(g, nil)
	if h, _, ok := next(t, m, 1000); ok {
		t.Fatalf("unexpected %s while stalled", opName(h.Op))
	}
	g.FwdCnt = 100
	m.handleGuest(g, nil)
	if h, p, ok := next(t, m, 1000); !ok || h.Op != opRW || len(p) != 50 {
		t.Fatalf("want the last 50 bytes, got %+v", h)
	}
}

func TestMuxBoundsQueuedResets(t *testing.T) {
	m := testMux(t)
	for i := 0; i < 3*maxQueuedRST; i++ {
		m.handleGuest(header{SrcCID: 3, DstCID: HostCID, SrcPort: uint32(i), DstPort: 1, Type: typeStream, Op: opRW}, nil)
	}
	n := 0
	for {
		h, _, ok := next(t, m, hdrLen)
		if !ok {
			break
		}
		if h.Op != opRst {
			t.Fatalf("got %s", opName(h.Op))
		}
		n++
	}
	if n != maxQueuedRST {
		t.Fatalf("%d resets queued, want the bound %d", n, maxQueuedRST)
	}
}

func TestMuxIgnoresForeignAddresses(t *testing.T) {
	m := testMux(t)
	m.handleGuest(header{SrcCID: 4, DstCID: HostCID, Type: typeStream, Op: opRequest}, nil)
	m.handleGuest(header{SrcCID: 3, DstCID: 7, Type: typeStream, Op: opRequest}, nil)
	m.handleGuest(header{SrcCID: 3, DstCID: HostCID, Type: typeStream, Op: opRW, Len: 5}, []byte("ab"))
	if m.hasWork() || m.numConns() != 0 {
		t.Fatal("packets with foreign addresses or bad lengths were acted on")
	}
}

func TestMuxLimitsStreams(t *testing.T) {
	m := newMux(muxConfig{
		guestCID: 3, udsPath: "/nonexistent", bufAlloc: 4096, maxToGuest: 4096, connectTimeout: 5 * time.Second,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Never answers, so every stream stays in the dialing state.
		dial: func(ctx context.Context, path string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	defer m.close()
	for i := 0; i < maxStreams+10; i++ {
		m.handleGuest(header{SrcCID: 3, DstCID: HostCID, SrcPort: uint32(i), DstPort: 80, Type: typeStream, Op: opRequest}, nil)
	}
	if n := m.numConns(); n != maxStreams {
		t.Fatalf("%d streams open, want the limit %d", n, maxStreams)
	}
	rsts := 0
	for {
		h, _, ok := next(t, m, hdrLen)
		if !ok {
			break
		}
		if h.Op == opRst {
			rsts++
		}
	}
	if rsts != 10 {
		t.Fatalf("%d refusals, want 10", rsts)
	}
}
