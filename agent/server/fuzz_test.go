package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

type scanned struct {
	id   uint32
	typ  byte
	peek string
}

// referenceFrames splits a whole stream into its complete frames the
// plain way, and says how many bytes the last, incomplete one still
// needs.
func referenceFrames(b []byte) (frames []scanned, need uint64) {
	for {
		if len(b) < frameHeaderLen {
			if len(b) == 0 {
				return frames, 0
			}
			return frames, uint64(frameHeaderLen-len(b)) + uint64(binary.BigEndian.Uint32(append(append([]byte(nil), b...), make([]byte, frameHeaderLen)...)[:4]))
		}
		n := uint64(binary.BigEndian.Uint32(b[:4]))
		if uint64(len(b)-frameHeaderLen) < n {
			return frames, n - uint64(len(b)-frameHeaderLen)
		}
		payload := b[frameHeaderLen : frameHeaderLen+int(n)]
		frames = append(frames, scanned{binary.BigEndian.Uint32(b[4:8]), b[8], string(payload[:min(len(payload), framePeek)])})
		b = b[frameHeaderLen+int(n):]
	}
}

// FuzzFrameScanner: whatever the bytes and however they are cut into
// reads, the connection's frame tracking sees the frames a plain parse of
// the whole stream sees, with the right peek; the peek readers never
// panic; with ignoreData, data frames come out of the stream as ignored
// ones and nothing else changes.
func FuzzFrameScanner(f *testing.F) {
	req, _ := proto.Marshal(&ttrpc.Request{Service: destroyService, Method: destroyMethod})
	resp, _ := proto.Marshal(&ttrpc.Response{Status: &status.Status{Code: 5, Message: "x"}})
	f.Add(bytes.Join([][]byte{frame(1, frameRequest, req), frame(1, frameResponse, resp), frame(3, frameData, []byte("d"))}, nil), uint8(3))
	f.Add(frame(5, frameRequest, bytes.Repeat([]byte{0x0a}, 200)), uint8(1))
	f.Add([]byte{0, 0, 0}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		want, _ := referenceFrames(data)
		for _, ignore := range []bool{false, true} {
			sc := frameScanner{ignoreData: ignore}
			var got []scanned
			stream := append([]byte(nil), data...)
			step := max(int(chunk), 1)
			for p := stream; len(p) > 0; {
				n := min(step, len(p))
				sc.scan(p[:n], func(id uint32, typ byte, peek []byte) {
					if len(peek) > framePeek {
						t.Fatalf("peek of %d bytes", len(peek))
					}
					got = append(got, scanned{id, typ, string(peek)})
					requestMethod(peek)
					responseOK(peek)
				})
				p = p[n:]
			}
			if len(got) != len(want) {
				t.Fatalf("ignoreData %v, reads of %d: %d frames, a plain parse finds %d", ignore, step, len(got), len(want))
			}
			for i := range want {
				w := want[i]
				if ignore && w.typ == frameData {
					w.typ = frameIgnored
				}
				if got[i] != w {
					t.Fatalf("ignoreData %v, reads of %d: frame %d = %+v, want %+v", ignore, step, i, got[i], w)
				}
			}
			if !ignore && !bytes.Equal(stream, data) {
				t.Fatal("the stream was changed")
			}
			if ignore {
				// Only the type bytes of data frames changed.
				after, _ := referenceFrames(stream)
				if len(after) != len(want) {
					t.Fatalf("rewriting changed the framing: %d frames, was %d", len(after), len(want))
				}
				for i := range after {
					if after[i].typ == frameData || after[i].id != want[i].id || after[i].peek != want[i].peek {
						t.Fatalf("frame %d after rewriting: %+v, was %+v", i, after[i], want[i])
					}
				}
			}
		}
	})
}

// FuzzPeekReaders: the method a request names and the status a response
// carries are read right from the first framePeek bytes, whatever the
// names, codes and payloads.
func FuzzPeekReaders(f *testing.F) {
	f.Add(destroyService, destroyMethod, []byte("p"), uint32(0), "")
	f.Add("grpc.Health", "Check", []byte{}, uint32(13), "boom")
	f.Fuzz(func(t *testing.T, svc, method string, payload []byte, code uint32, msg string) {
		b, err := proto.Marshal(&ttrpc.Request{Service: svc, Method: method, Payload: payload, TimeoutNano: 7})
		if err != nil {
			return
		}
		gs, gm := requestMethod(b[:min(len(b), framePeek)])
		if gs != svc && gs != "" || gm != method && gm != "" {
			t.Fatalf("requestMethod = %q, %q; want %q, %q or empty", gs, gm, svc, method)
		}
		if len(svc)+len(method)+6 <= framePeek && len(svc) < 128 && len(method) < 128 && (gs != svc || gm != method) {
			t.Fatalf("requestMethod = %q, %q; want %q, %q", gs, gm, svc, method)
		}
		r, err := proto.Marshal(&ttrpc.Response{Status: &status.Status{Code: int32(code), Message: msg}, Payload: payload})
		if err != nil {
			return
		}
		if ok := responseOK(r[:min(len(r), framePeek)]); ok != (code == 0) {
			t.Fatalf("responseOK = %v for code %d", ok, code)
		}
	})
}

// FuzzConnStream feeds arbitrary bytes as a host connection's stream to
// a served agent (no services behind it: every call is answered
// Unimplemented, Health is served), completes the last frame, then asks
// Health.Check. Properties: the agent does not die (the data frame panic
// above); every frame ttrpc answers is answered, the Check with SERVING;
// the connection's count of unanswered requests is back at zero; once
// the host hangs up, the connection is forgotten.
func FuzzConnStream(f *testing.F) {
	req, _ := proto.Marshal(&ttrpc.Request{Service: "grpc.AgentService", Method: "ListRoutes"})
	f.Add(frame(1, frameRequest, req))
	f.Add(bytes.Join([][]byte{frame(1, frameRequest, req), frame(1, frameData, nil), frame(2, frameResponse, nil)}, nil))
	f.Add(frame(7, frameRequest, []byte{0xff, 0xff}))
	f.Add([]byte{0, 0, 0x10})
	read, _ := proto.Marshal(&ttrpc.Request{Service: "grpc.AgentService", Method: "ReadStdout", Payload: []byte{0x0a, 0x01, 'c'}})
	f.Add(bytes.Join([][]byte{frame(5, frameRequest, read), frame(5, frameRequest, req), frame(3, frameRequest, read), frame(7, frameRequest, read)}, nil))
	// The stdio path takes the ReadStdout and ReadStderr calls it decodes
	// (stdio.go); its reads all fail, so that only the final Check
	// succeeds.
	srv, path := serveRawWith(f, Options{}, func(s *Server) {
		s.stdio = &fakeStdio{read: func(context.Context, string, string, []byte, bool, bool) (int, error) {
			return 0, fmt.Errorf("no such process: %w", errdefs.ErrNotFound)
		}}
	})
	check, _ := proto.Marshal(&ttrpc.Request{Service: "grpc.Health", Method: "Check"})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, need := referenceFrames(data)
		if need > 1<<16 {
			return // a frame longer than the input: only reading it to its end would tell
		}
		stream := append(append(append([]byte(nil), data...), make([]byte, need)...), frame(0xffffffff, frameRequest, check)...)
		frames, _ := referenceFrames(stream)
		expect := 0
		for _, fr := range frames {
			if answered(fr.typ, fr.id, 0) {
				expect++
			}
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("the agent no longer accepts connections: %v", err)
		}
		defer c.Close()
		go func() { _, _ = c.Write(stream) }()
		deadline := time.Now().Add(10 * time.Second)
		_ = c.SetReadDeadline(deadline)
		healthy := false
		for i := 0; i < expect; i++ {
			var hdr [frameHeaderLen]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				t.Fatalf("answer %d of %d: %v", i+1, expect, err)
			}
			body := make([]byte, binary.BigEndian.Uint32(hdr[:4]))
			if _, err := io.ReadFull(c, body); err != nil {
				t.Fatalf("answer %d of %d: %v", i+1, expect, err)
			}
			var r ttrpc.Response
			if hdr[8] != frameResponse || proto.Unmarshal(body, &r) != nil {
				t.Fatalf("answer %d is not a response: type %d", i+1, hdr[8])
			}
			if r.Status.GetCode() == 0 {
				var hc pb.HealthCheckResponse
				if binary.BigEndian.Uint32(hdr[4:8]) != 0xffffffff || proto.Unmarshal(r.Payload, &hc) != nil || hc.Status != pb.HealthCheckResponse_SERVING {
					t.Fatalf("unexpected success on stream %d", binary.BigEndian.Uint32(hdr[4:8]))
				}
				healthy = true
			} else if r.Status.GetMessage() == "" {
				t.Fatalf("status %d without a message", r.Status.GetCode())
			}
		}
		reused := false // the Check is refused if the host used its id already
		for _, fr := range frames[:len(frames)-1] {
			reused = reused || fr.typ == frameRequest && fr.id == 0xffffffff
		}
		if !healthy && !reused {
			t.Fatal("Health.Check not answered SERVING")
		}
		for !srvIdle(srv) {
			if time.Now().After(deadline) {
				t.Fatal("requests counted as unanswered after every answer was read")
			}
			time.Sleep(time.Millisecond)
		}
		c.Close()
		for srvConns(srv) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("a closed connection is still tracked")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

func srvIdle(s *Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if !c.idle() {
			return false
		}
	}
	return true
}

func srvConns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
