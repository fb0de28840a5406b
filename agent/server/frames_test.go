package server

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// blockingNetwork holds ListRoutes until released: a unary call in flight.
type blockingNetwork struct {
	Network
	entered chan struct{}
	release chan struct{}
}

func (b *blockingNetwork) ListRoutes(ctx context.Context) ([]*typespb.Route, error) {
	close(b.entered)
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil, nil
}

// serveRaw serves opts on a unix socket and returns its path.
func serveRaw(t testing.TB, opts Options) (*Server, string) {
	t.Helper()
	return serveRawWith(t, opts, nil)
}

// serveRawWith is serveRaw with tune applied to the server before it
// serves.
func serveRawWith(t testing.TB, opts Options, tune func(*Server)) (*Server, string) {
	t.Helper()
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := Listen(config.Addr{Scheme: "unix", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, l); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv, path
}

func requestFrame(t testing.TB, id uint32, service, method string, msg proto.Message) []byte {
	t.Helper()
	var payload []byte
	if msg != nil {
		var err error
		if payload, err = proto.Marshal(msg); err != nil {
			t.Fatal(err)
		}
	}
	b, err := proto.Marshal(&ttrpc.Request{Service: service, Method: method, Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return frame(id, frameRequest, b)
}

// readResponse reads one response frame and decodes it.
func readResponse(t testing.TB, c net.Conn) (uint32, *ttrpc.Response) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("read response header: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:4]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("read response body: %v", err)
	}
	if hdr[8] != frameResponse {
		t.Fatalf("frame type %d, want a response", hdr[8])
	}
	var r ttrpc.Response
	if err := proto.Unmarshal(body, &r); err != nil {
		t.Fatalf("response: %v", err)
	}
	return binary.BigEndian.Uint32(hdr[4:8]), &r
}

// checkHealth asks Health.Check on a fresh connection.
func checkHealth(t testing.TB, path string) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the agent no longer accepts connections: %v", err)
	}
	defer c.Close()
	if _, err := c.Write(requestFrame(t, 1, "grpc.Health", "Check", &pb.CheckRequest{})); err != nil {
		t.Fatal(err)
	}
	if _, r := readResponse(t, c); r.Status.GetCode() != 0 {
		t.Fatalf("Check answered %v", r.Status)
	}
}

// A data frame (the streaming message type) naming the stream of a unary
// request still in flight reaches ttrpc's stream table entry for it, which
// is nil for unary calls: ttrpc dereferences it in its receive goroutine
// and the whole agent (PID 1) dies. The agent serves no streaming method,
// so the connection turns such frames into ones ttrpc ignores or refuses.
func TestDataFrameOnUnaryStream(t *testing.T) {
	for _, flags := range []byte{0, 1, 4, 5} {
		net := &blockingNetwork{entered: make(chan struct{}), release: make(chan struct{})}
		_, path := serveRaw(t, Options{Network: net})
		c, err := dialUnix(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(requestFrame(t, 1, "grpc.AgentService", "ListRoutes", &pb.ListRoutesRequest{})); err != nil {
			t.Fatal(err)
		}
		<-net.entered
		data := frame(1, 3, []byte{0x0a, 0x00})
		data[9] = flags
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
		// An even stream id is refused by ttrpc itself, answered on it.
		if _, err := c.Write(frame(2, 3, nil)); err != nil {
			t.Fatal(err)
		}
		id, r := readResponse(t, c)
		if id != 2 || codes.Code(r.Status.GetCode()) != codes.InvalidArgument {
			t.Fatalf("flags %#x: stream %d answered %v, want stream 2 InvalidArgument", flags, id, r.Status)
		}
		close(net.release)
		if id, r := readResponse(t, c); id != 1 || r.Status.GetCode() != 0 {
			t.Fatalf("flags %#x: stream %d answered %v, want ListRoutes' OK on stream 1", flags, id, r.Status)
		}
		c.Close()
		checkHealth(t, path)
	}
}

func dialUnix(path string) (net.Conn, error) { return net.Dial("unix", path) }

// A request whose payload is not the method's message is the host's
// mistake: InvalidArgument naming the method, not ttrpc's Internal.
func TestMalformedPayloadIsInvalidArgument(t *testing.T) {
	_, path := serveRaw(t, Options{})
	c, err := dialUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := proto.Marshal(&ttrpc.Request{Service: "grpc.AgentService", Method: "StatsContainer", Payload: []byte{0x0a, 0xff, 0xff}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(frame(1, frameRequest, b)); err != nil {
		t.Fatal(err)
	}
	_, r := readResponse(t, c)
	if codes.Code(r.Status.GetCode()) != codes.InvalidArgument || !strings.Contains(r.Status.GetMessage(), "StatsContainer") || !strings.Contains(r.Status.GetMessage(), "malformed") {
		t.Fatalf("answered %v", r.Status)
	}
	checkHealth(t, path)
}

// Every frame ttrpc answers is counted as a request awaiting its answer,
// not requests only: otherwise the answer to a host's stray frame on a
// server-side stream id stood for a long poll still in flight, and the
// server's stop went ahead without waiting for it.
func TestPendingCountsEveryAnsweredFrame(t *testing.T) {
	net := &blockingNetwork{entered: make(chan struct{}), release: make(chan struct{})}
	srv, path := serveRaw(t, Options{Network: net})
	c, err := dialUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(requestFrame(t, 1, "grpc.AgentService", "ListRoutes", &pb.ListRoutesRequest{})); err != nil {
		t.Fatal(err)
	}
	<-net.entered
	if _, err := c.Write(frame(2, frameResponse, nil)); err != nil {
		t.Fatal(err)
	}
	if id, r := readResponse(t, c); id != 2 || codes.Code(r.Status.GetCode()) != codes.InvalidArgument {
		t.Fatalf("stream %d answered %v, want stream 2 InvalidArgument", id, r.Status)
	}
	time.Sleep(50 * time.Millisecond) // the write's accounting follows the bytes
	if srvIdle(srv) {
		t.Fatal("ListRoutes is in flight, but the connection counts nothing pending")
	}
	close(net.release)
	if id, r := readResponse(t, c); id != 1 || r.Status.GetCode() != 0 {
		t.Fatalf("stream %d answered %v, want ListRoutes' OK", id, r.Status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !srvIdle(srv) {
		if time.Now().After(deadline) {
			t.Fatal("still pending after every answer")
		}
		time.Sleep(time.Millisecond)
	}
}
