package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

func frame(id uint32, typ byte, payload []byte) []byte {
	b := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
	binary.BigEndian.PutUint32(b[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[4:8], id)
	b[8] = typ
	return append(b, payload...)
}

func TestFrameScanner(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 300)
	stream := bytes.Join([][]byte{
		frame(1, frameRequest, []byte("abc")),
		frame(3, frameResponse, nil),
		frame(5, 3, long),
		frame(7, frameRequest, []byte("z")),
	}, nil)
	type got struct {
		id   uint32
		typ  byte
		peek string
	}
	want := []got{{1, frameRequest, "abc"}, {3, frameResponse, ""}, {5, 3, string(long[:framePeek])}, {7, frameRequest, "z"}}
	for _, chunk := range []int{1, 3, 7, len(stream)} {
		var f frameScanner
		var frames []got
		for p := stream; len(p) > 0; {
			n := min(chunk, len(p))
			f.scan(p[:n], func(id uint32, typ byte, peek []byte) { frames = append(frames, got{id, typ, string(peek)}) })
			p = p[n:]
		}
		if len(frames) != len(want) {
			t.Fatalf("chunks of %d: %d frames, want %d: %+v", chunk, len(frames), len(want), frames)
		}
		for i := range want {
			if frames[i] != want[i] {
				t.Errorf("chunks of %d: frame %d = %+v, want %+v", chunk, i, frames[i], want[i])
			}
		}
	}
}

func TestRequestMethodAndResponseOK(t *testing.T) {
	req, err := proto.Marshal(&ttrpc.Request{Service: destroyService, Method: destroyMethod, Payload: bytes.Repeat([]byte{1}, 500), TimeoutNano: 5})
	if err != nil {
		t.Fatal(err)
	}
	if svc, m := requestMethod(req[:framePeek]); svc != destroyService || m != destroyMethod {
		t.Errorf("requestMethod = %q, %q", svc, m)
	}
	if svc, m := requestMethod([]byte{0xff, 0xff}); svc != "" || m != "" {
		t.Errorf("garbage named %q, %q", svc, m)
	}
	for _, tc := range []struct {
		st   *status.Status
		data []byte
		ok   bool
	}{
		{status.New(codes.OK, ""), []byte{}, true},
		{status.New(codes.OK, ""), bytes.Repeat([]byte{1}, 200), true},
		{status.New(codes.Internal, strings.Repeat("long message ", 20)), nil, false},
		{status.New(codes.Unavailable, ""), nil, false},
	} {
		b, err := proto.Marshal(&ttrpc.Response{Status: tc.st.Proto(), Payload: tc.data})
		if err != nil {
			t.Fatal(err)
		}
		if got := responseOK(b[:min(len(b), framePeek)]); got != tc.ok {
			t.Errorf("responseOK(%v) = %t, want %t", tc.st.Code(), got, tc.ok)
		}
	}
	if !responseOK(nil) {
		t.Error("a response without status is not OK")
	}
}

// gatedConn is a host that does not read replies until the gate opens.
type gatedConn struct {
	net.Conn
	gate chan struct{}
}

func (g *gatedConn) Read(p []byte) (int, error) {
	<-g.gate
	return g.Conn.Read(p)
}

type stopTest struct {
	srv      *Server
	client   pb.AgentServiceService
	gate     chan struct{}
	openGate func()
	path     string
	served   chan struct{} // closed when Serve returned
	serveErr error
}

// startStopTest serves an agent with a sandbox whose host reads replies
// only once the gate opens.
func startStopTest(t *testing.T, stopAfterDestroy bool, tune func(*Server)) *stopTest {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := Listen(config.Addr{Scheme: "unix", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Sandbox: testSandbox(t), StopAfterDestroy: stopAfterDestroy})
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(srv)
	}
	st := &stopTest{srv: srv, path: path, gate: make(chan struct{}), served: make(chan struct{})}
	st.openGate = sync.OnceFunc(func() { close(st.gate) })
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		st.serveErr = srv.Serve(ctx, l)
		close(st.served)
	}()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	tc := ttrpc.NewClient(&gatedConn{Conn: conn, gate: st.gate})
	st.client = pb.NewAgentServiceClient(tc)
	t.Cleanup(func() {
		st.openGate()
		tc.Close()
		cancel()
		select {
		case <-st.served:
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return st
}

// The host must have the DestroySandbox reply before the server stops (and
// PID 1 powers off): while the host has not taken it, Serve keeps going.
func TestDestroySandboxReplyTakenBeforeStop(t *testing.T) {
	st := startStopTest(t, true, func(s *Server) { s.flushTimeout = time.Minute })
	replied := make(chan error, 1)
	go func() {
		_, err := st.client.DestroySandbox(context.Background(), &pb.DestroySandboxRequest{})
		replied <- err
	}()
	select {
	case <-st.served:
		t.Fatal("Serve returned while the DestroySandbox reply was still in the guest's socket")
	case <-time.After(500 * time.Millisecond):
	}
	opened := time.Now()
	st.openGate()
	select {
	case err := <-replied:
		if err != nil {
			t.Fatalf("DestroySandbox: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no DestroySandbox reply")
	}
	select {
	case <-st.served:
		if st.serveErr != nil {
			t.Errorf("Serve: %v", st.serveErr)
		}
		t.Logf("Serve returned %s after the host read the reply", time.Since(opened).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the host took the DestroySandbox reply")
	}
}

// A GetOOMEvent long poll pending at DestroySandbox is answered (the
// sandbox is gone) and does not hold the stop up until the grace expires.
func TestDestroySandboxReleasesOOMPollAndStops(t *testing.T) {
	st := startStopTest(t, true, func(s *Server) { s.stopGrace = time.Minute })
	st.openGate()
	oom := make(chan error, 1)
	go func() {
		_, err := st.client.GetOOMEvent(context.Background(), &pb.GetOOMEventRequest{})
		oom <- err
	}()
	time.Sleep(100 * time.Millisecond) // the poll is pending
	if _, err := st.client.DestroySandbox(context.Background(), &pb.DestroySandboxRequest{}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	select {
	case err := <-oom:
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "destroyed") {
			t.Errorf("GetOOMEvent after DestroySandbox = %v, want Unavailable saying the sandbox was destroyed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("GetOOMEvent still pending after DestroySandbox")
	}
	select {
	case <-st.served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return: the released long poll should leave nothing in flight")
	}
}

// A host that never reads again cannot keep the guest from powering off:
// the stop is bounded.
func TestDestroySandboxStopBoundedWhenHostNeverReads(t *testing.T) {
	st := startStopTest(t, true, func(s *Server) {
		s.flushTimeout = 200 * time.Millisecond
		s.stopGrace = 200 * time.Millisecond
	})
	go func() { _, _ = st.client.DestroySandbox(context.Background(), &pb.DestroySandboxRequest{}) }()
	select {
	case <-st.served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return although the host stopped reading")
	}
}

// Without StopAfterDestroy (a development host) the server keeps serving.
func TestDestroySandboxWithoutStop(t *testing.T) {
	st := startStopTest(t, false, nil)
	st.openGate()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := st.client.DestroySandbox(ctx, &pb.DestroySandboxRequest{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := st.client.DestroySandbox(ctx, &pb.DestroySandboxRequest{}); err != nil {
		t.Fatalf("second DestroySandbox: %v", err)
	}
	select {
	case <-st.served:
		t.Fatal("Serve returned without StopAfterDestroy")
	default:
	}
}

// The fallback stops the server when a successful DestroySandbox's reply
// is never recognised going out: here the request puts a large metadata
// field before the method name (Go marshals by field number, so it is
// framed by hand), which the watcher's peek cannot see past.
func TestDestroySandboxFallbackStop(t *testing.T) {
	st := startStopTest(t, true, func(s *Server) { s.destroyFallback = 100 * time.Millisecond })
	c, err := net.Dial("unix", st.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	md, err := proto.Marshal(&ttrpc.KeyValue{Key: "k", Value: strings.Repeat("v", 200)})
	if err != nil {
		t.Fatal(err)
	}
	payload := protowire.AppendTag(nil, 5, protowire.BytesType)
	payload = protowire.AppendBytes(payload, md)
	rest, err := proto.Marshal(&ttrpc.Request{Service: destroyService, Method: destroyMethod})
	if err != nil {
		t.Fatal(err)
	}
	payload = append(payload, rest...)
	if _, err := c.Write(frame(1, frameRequest, payload)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, frameHeaderLen)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("reply: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[0:4]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("reply: %v", err)
	}
	if !responseOK(body) {
		t.Fatalf("DestroySandbox failed: % x", body)
	}
	select {
	case <-st.served:
	case <-time.After(10 * time.Second):
		t.Fatal("the fallback did not stop the server")
	}
}

// pipeConn is a server (not serving) and a tracked connection of it over
// an in-memory pipe, with the host's end.
func pipeConn(t *testing.T) (*Server, *trackedConn, net.Conn) {
	t.Helper()
	srv, err := New(Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	guest, host := net.Pipe()
	t.Cleanup(func() { host.Close() })
	return srv, newTrackedConn(guest, srv), host
}

// ttrpc marks a connection idle only when its loop wakes, so a connection
// with a long poll pending can look idle to ttrpc's Shutdown; the server's
// stop waits on its own count of requests without a written response.
func TestStopWaitsForPendingResponses(t *testing.T) {
	srv, tc, host := pipeConn(t)
	srv.track(tc)

	req := frame(3, frameRequest, []byte{0x0a, 0x01, 'x'})
	go host.Write(req)
	if _, err := io.ReadFull(tc, make([]byte, len(req))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.waitResponsesWritten(ctx); err == nil {
		t.Fatal("the stop went ahead with a request whose response was not written")
	}

	go io.Copy(io.Discard, host)
	if _, err := tc.Write(frame(3, frameResponse, nil)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.waitResponsesWritten(ctx); err != nil {
		t.Fatalf("the stop still waits after the response was written: %v", err)
	}
}
