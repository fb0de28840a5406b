package hvsock

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

func FuzzVhostDecode(f *testing.F) {
	f.Add(uint32(reqSetMemTable), []byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint32(reqGetConfig), []byte{0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint32(reqSetVringAddr), make([]byte, 40))
	f.Fuzz(func(t *testing.T, req uint32, p []byte) {
		_, _ = parseMsgHeader(p)
		_, _ = decodeU64(req, p)
		if s, err := decodeVringState(req, p); err == nil && s.Index >= numQueues {
			t.Fatalf("index %d accepted", s.Index)
		}
		if a, err := decodeVringAddr(p); err == nil && a.Index >= numQueues {
			t.Fatalf("index %d accepted", a.Index)
		}
		if q, _, err := decodeVringFD(req, p); err == nil && q >= numQueues {
			t.Fatalf("index %d accepted", q)
		}
		if rs, err := decodeMemTable(p); err == nil && (len(rs) == 0 || len(rs) > maxMemRegions) {
			t.Fatalf("%d regions accepted", len(rs))
		}
		if c, err := decodeConfig(p); err == nil {
			if out := configBytes(c, 3); len(out) != 12+int(c.Size) {
				t.Fatalf("config reply of %d bytes for size %d", len(out), c.Size)
			}
		}
		_, _ = parseHeader(p)
		_, _ = parseConnect(string(p))
	})
}

// FuzzGuestPackets drives the connection state machine with arbitrary guest
// packets and checks every packet it produces in return.
func FuzzGuestPackets(f *testing.F) {
	pkt := func(h header, payload string) []byte {
		h.Len = uint32(len(payload))
		b := make([]byte, hdrLen)
		h.put(b)
		return append(b, payload...)
	}
	seed := append(pkt(header{SrcPort: 1234, DstPort: firstLocalPort, Type: typeStream, Op: opResponse, BufAlloc: 4096}, ""),
		pkt(header{SrcPort: 1234, DstPort: firstLocalPort, Type: typeStream, Op: opRW, BufAlloc: 4096}, "hello")...)
	seed = append(seed, pkt(header{SrcPort: 5, DstPort: 80, Type: typeStream, Op: opRequest, BufAlloc: 100}, "")...)
	seed = append(seed, pkt(header{SrcPort: 1234, DstPort: firstLocalPort, Type: typeStream, Op: opShutdown, Flags: 3}, "")...)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		var peers sync.WaitGroup
		drain := func(c net.Conn) {
			peers.Add(1)
			go func() {
				defer peers.Done()
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
		m := newMux(muxConfig{
			guestCID: 3, udsPath: "/nonexistent", bufAlloc: 8192, maxToGuest: 8192,
			connectTimeout: time.Second, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			dial: func(ctx context.Context, path string) (net.Conn, error) {
				a, b := net.Pipe()
				drain(b)
				return a, nil
			},
		})
		a, b := net.Pipe()
		drain(b)
		if err := m.connectHost(a, 1234); err != nil {
			t.Fatal(err)
		}
		dst := make([]byte, 4096)
		check := func() {
			for i := 0; i < 8; i++ {
				size := hdrLen + i*500
				n := m.fill(dst[:size])
				if n == 0 {
					return
				}
				if n < hdrLen || n > size {
					t.Fatalf("fill returned %d for a %d-byte buffer", n, size)
				}
				h, _ := parseHeader(dst[:n])
				if int(h.Len) != n-hdrLen || h.SrcCID != HostCID || h.DstCID != 3 {
					t.Fatalf("bad packet out: %+v in %d bytes", h, n)
				}
			}
		}
		for len(data) >= hdrLen {
			h, _ := parseHeader(data)
			h.SrcCID, h.DstCID = 3, HostCID
			if h.Len > uint32(len(data)-hdrLen) {
				h.Len = uint32(len(data) - hdrLen)
			}
			m.handleGuest(h, data[hdrLen:hdrLen+int(h.Len)])
			data = data[hdrLen+int(h.Len):]
			check()
		}
		m.close()
		peers.Wait()
	})
}
