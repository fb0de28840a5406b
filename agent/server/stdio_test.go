package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// fakeStdio answers stdio reads with output made from the ids, or as
// read says, and records how each read with output was settled.
type fakeStdio struct {
	mu      sync.Mutex
	calls   int    // reads answered (not counting ErrNoOutputYet)
	settled []bool // the settle of each read with output, in order
	read    func(ctx context.Context, cid, eid string, buf []byte, stderr, wait bool) (int, error)
}

func (f *fakeStdio) readStream(ctx context.Context, cid, eid string, buf []byte, stderr, wait bool) (int, func(bool), error) {
	var n int
	var err error
	if f.read != nil {
		n, err = f.read(ctx, cid, eid, buf, stderr, wait)
	} else {
		n = copy(buf, output(cid, eid, stderr, len(buf)))
	}
	if !errors.Is(err, container.ErrNoOutputYet) {
		f.mu.Lock()
		f.calls++
		f.mu.Unlock()
	}
	if n == 0 {
		return n, noSettle, err
	}
	return n, func(sent bool) {
		f.mu.Lock()
		f.settled = append(f.settled, sent)
		f.mu.Unlock()
	}, err
}

func (f *fakeStdio) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// output is what the fake reads for a call: the call's names, repeated to
// the length asked.
func output(cid, eid string, stderr bool, n int) []byte {
	unit := fmt.Sprintf("%s/%s/%v;", cid, eid, stderr)
	return bytes.Repeat([]byte(unit), n/len(unit)+1)[:n]
}

// rawStdioConn serves a server without a sandbox whose stdio path reads
// from f, and returns a raw connection to it.
func rawStdioConn(t *testing.T, f *fakeStdio) (*Server, net.Conn) {
	t.Helper()
	srv, path := serveRawWith(t, Options{}, func(s *Server) { s.stdio = f })
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

// serveStdio serves a server without a sandbox (ttrpc answers
// ReadStdout Unimplemented) whose stdio path reads from f, and returns a
// client and the socket path.
func serveStdioTest(t *testing.T, f *fakeStdio, tune func(*Server)) (*Server, pb.AgentServiceService, string) {
	t.Helper()
	srv, path := serveRawWith(t, Options{}, func(s *Server) {
		s.stdio = f
		if tune != nil {
			tune(s)
		}
	})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	tc := ttrpc.NewClient(c)
	t.Cleanup(func() { tc.Close() })
	return srv, pb.NewAgentServiceClient(tc), path
}

// The frame laid out around the output is, byte for byte, what ttrpc
// writes for the same reply.
func TestStdioFrameIsTTRPCs(t *testing.T) {
	for _, n := range []int{0, 1, 2, 125, 126, 127, 128, 16381, 16384, 32 << 10, 64 << 10, container.MaxReadLen} {
		data := output("c", "e", false, n)
		buf := make([]byte, stdioPrefixMax+n)
		copy(buf[stdioPrefixMax:], data)
		got := stdioFrame(buf, 0x01020305, n)

		payload, err := proto.Marshal(&pb.ReadStreamResponse{Data: data})
		if err != nil {
			t.Fatal(err)
		}
		body, err := proto.Marshal(&ttrpc.Response{Status: status.New(codes.OK, "").Proto(), Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		if want := frame(0x01020305, frameResponse, body); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: frame %x..., ttrpc's %x...", n, got[:min(len(got), 32)], want[:min(len(want), 32)])
		}
	}
}

func marshalRequest(t testing.TB, r *ttrpc.Request) []byte {
	t.Helper()
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readPayload(t testing.TB, r *pb.ReadStreamRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStdioRequest(t *testing.T) {
	read := readPayload(t, &pb.ReadStreamRequest{ContainerId: "c1", ExecId: "e1", Len: 32 << 10})
	dup := append(protowire.AppendString(protowire.AppendTag(append([]byte(nil), read...), 1, protowire.BytesType), "c2"), 0x18, 0x05)
	unknown := protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), read...), 9, protowire.VarintType), 1)
	badUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff, 0xfe})
	wrongType := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 3)
	taken := []struct {
		name     string
		req      []byte
		stderr   bool
		timeout  time.Duration
		cid, eid string
		len      uint32
	}{
		{"stdout", marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout", Payload: read}), false, 0, "c1", "e1", 32 << 10},
		{"stderr with timeout", marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStderr", Payload: read, TimeoutNano: 5e9}), true, 5 * time.Second, "c1", "e1", 32 << 10},
		{"metadata", marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout", Payload: read,
			Metadata: []*ttrpc.KeyValue{{Key: "traceparent", Value: "00-x"}}}), false, 0, "c1", "e1", 32 << 10},
		{"repeated fields: the last wins", marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout", Payload: dup}), false, 0, "c2", "e1", 5},
		{"empty payload", marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout"}), false, 0, "", "", 0},
	}
	for _, c := range taken {
		r := parseStdioRequest(c.req)
		if r == nil {
			t.Errorf("%s: not taken", c.name)
			continue
		}
		if r.stderr != c.stderr || r.timeout != c.timeout || r.read.ContainerId != c.cid || r.read.ExecId != c.eid || r.read.Len != c.len {
			t.Errorf("%s: got stderr %v timeout %v %q/%q len %d", c.name, r.stderr, r.timeout, r.read.ContainerId, r.read.ExecId, r.read.Len)
		}
	}
	left := map[string][]byte{
		"another method":         marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "WaitProcess", Payload: read}),
		"another service":        marshalRequest(t, &ttrpc.Request{Service: "grpc.Health", Method: "ReadStdout", Payload: read}),
		"unknown request field":  append(marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout"}), 0x30, 0x01),
		"unknown payload field":  marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout", Payload: unknown}),
		"container id not UTF-8": marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout", Payload: badUTF8}),
		"wire type":              marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout", Payload: wrongType}),
		"truncated":              marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout", Payload: read})[:20],
		"metadata not UTF-8": protowire.AppendBytes(protowire.AppendTag(marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout"}), 5, protowire.BytesType),
			protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0xc3})),
	}
	for name, b := range left {
		if parseStdioRequest(b) != nil {
			t.Errorf("%s: taken", name)
		}
	}
}

// FuzzParseStdioRequest: what the stdio path takes, protobuf decodes the
// same way, so ttrpc would have served the same call.
func FuzzParseStdioRequest(f *testing.F) {
	read, _ := proto.Marshal(&pb.ReadStreamRequest{ContainerId: "c", ExecId: "e", Len: 7})
	for _, m := range []string{"ReadStdout", "ReadStderr", "Check"} {
		b, _ := proto.Marshal(&ttrpc.Request{Service: agentServiceName, Method: m, Payload: read, TimeoutNano: 9,
			Metadata: []*ttrpc.KeyValue{{Key: "a", Value: "b"}}})
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := parseStdioRequest(b)
		if r == nil {
			return
		}
		var req ttrpc.Request
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Fatalf("taken, but ttrpc would refuse it: %v", err)
		}
		var rs pb.ReadStreamRequest
		if err := proto.Unmarshal(req.Payload, &rs); err != nil {
			t.Fatalf("taken, but its payload does not decode: %v", err)
		}
		method := "ReadStdout"
		if r.stderr {
			method = "ReadStderr"
		}
		if req.Service != agentServiceName || req.Method != method || time.Duration(req.TimeoutNano) != r.timeout ||
			rs.ContainerId != r.read.ContainerId || rs.ExecId != r.read.ExecId || rs.Len != r.read.Len {
			t.Fatalf("decoded %+v / %+v, protobuf decodes %v %v", r, &r.read, &req, &rs)
		}
	})
}

func TestStdioPathServes(t *testing.T) {
	f := &fakeStdio{}
	var mu sync.Mutex
	var lens []int
	var waits []string
	f.read = func(ctx context.Context, cid, eid string, buf []byte, stderr, wait bool) (int, error) {
		if cid == "slow" && !wait {
			return 0, container.ErrNoOutputYet
		}
		_, has := ctx.Deadline()
		mu.Lock()
		lens, waits = append(lens, len(buf)), append(waits, fmt.Sprintf("wait=%v deadline=%v", wait, has))
		mu.Unlock()
		switch cid {
		case "missing":
			return 0, fmt.Errorf("container %q: %w", cid, errdefs.ErrNotFound)
		case "panics":
			panic("boom")
		case "eof":
			return 0, nil
		}
		return copy(buf, output(cid, eid, stderr, min(len(buf), 1000))), nil
	}
	_, cli, _ := serveStdioTest(t, f, nil)
	ctx := context.Background()

	r, err := cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "c", ExecId: "e", Len: 10})
	if err != nil || string(r.Data) != string(output("c", "e", false, 10)) {
		t.Fatalf("ReadStdout: %q, %v", r.GetData(), err)
	}
	r, err = cli.ReadStderr(ctx, &pb.ReadStreamRequest{ContainerId: "c", ExecId: "e", Len: 2000})
	if err != nil || string(r.Data) != string(output("c", "e", true, 1000)) {
		t.Fatalf("ReadStderr: %q, %v", r.GetData(), err)
	}
	if r, err = cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "eof"}); err != nil || len(r.Data) != 0 {
		t.Fatalf("end of stream: %q, %v", r.GetData(), err)
	}
	_, err = cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "missing"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `container "missing"`) {
		t.Fatalf("missing container: %v", err)
	}
	_, err = cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "panics"})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "ReadStdout: internal error: boom") {
		t.Fatalf("panic: %v", err)
	}
	// Lengths as container.ReadLen: 0 is the default, beyond the pooled
	// buffer a buffer of its own, beyond the cap the cap.
	for _, n := range []uint32{100 << 10, 4 << 20} {
		if _, err := cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "c", Len: n}); err != nil {
			t.Fatal(err)
		}
	}
	// Output not there yet: the read waits on a worker, under the call's
	// deadline; an expired deadline is the wait's to answer.
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if r, err := cli.ReadStdout(tctx, &pb.ReadStreamRequest{ContainerId: "slow"}); err != nil || string(r.Data) != string(output("slow", "", false, 1000)) {
		t.Fatalf("waiting read: %q, %v", r.GetData(), err)
	}
	if _, err := cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "slow"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	wantLens := []int{10, 2000, 32 << 10, 32 << 10, 32 << 10, 100 << 10, container.MaxReadLen, 32 << 10, 32 << 10}
	if fmt.Sprint(lens) != fmt.Sprint(wantLens) {
		t.Fatalf("buffer lengths %v, want %v", lens, wantLens)
	}
	wantWaits := "wait=true deadline=true wait=true deadline=false"
	if got := strings.Join(waits[len(waits)-2:], " "); got != wantWaits || strings.Count(strings.Join(waits, " "), "wait=true") != 2 {
		t.Fatalf("reads %v: output there is read at once, the rest waits under the call's deadline", waits)
	}
}

// bigService is a ttrpc method answering large replies, which ttrpc
// writes in two writes (its 4 KiB buffer, then the rest): the stdio path's
// frames must not land between them.
func registerBig(s *Server) {
	s.ttrpc.RegisterService("test.Big", &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Get": func(ctx context.Context, unmarshal func(any) error) (any, error) {
			var req pb.ReadStreamRequest
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			return &pb.ReadStreamResponse{Data: output(req.ContainerId, "big", false, int(req.Len))}, nil
		},
	}})
}

func TestStdioFramesWholeAmongTTRPCs(t *testing.T) {
	// Odd-length ids wait (a worker answers), the others are answered at
	// once by the intake's goroutine.
	f := &fakeStdio{read: func(_ context.Context, cid, eid string, buf []byte, stderr, wait bool) (int, error) {
		if !wait && len(cid+eid)%2 == 1 {
			return 0, container.ErrNoOutputYet
		}
		return copy(buf, output(cid, eid, stderr, len(buf))), nil
	}}
	_, cli, path := serveStdioTest(t, f, registerBig)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	tc := ttrpc.NewClient(c)
	defer tc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := 0; i < 100; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("s", i)
			r, err := cli.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: id, ExecId: "x", Len: 20000 + uint32(i)})
			if err != nil || !bytes.Equal(r.Data, output(id, "x", false, 20000+i)) {
				errs <- fmt.Errorf("ReadStdout %d: %d bytes, %v", i, len(r.GetData()), err)
			}
		}()
		go func() {
			defer wg.Done()
			id := fmt.Sprint("b", i)
			var r pb.ReadStreamResponse
			err := tc.Call(ctx, "test.Big", "Get", &pb.ReadStreamRequest{ContainerId: id, Len: 9000 + uint32(i)}, &r)
			if err != nil || !bytes.Equal(r.Data, output(id, "big", false, 9000+i)) {
				errs <- fmt.Errorf("big %d: %d bytes, %v", i, len(r.GetData()), err)
			}
		}()
	}
	// The same on the stdio path's own connection.
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r pb.ReadStreamResponse
			if err := tc.Call(ctx, agentServiceName, "ReadStderr", &pb.ReadStreamRequest{ContainerId: "m", ExecId: fmt.Sprint(i), Len: 5000}, &r); err != nil ||
				!bytes.Equal(r.Data, output("m", fmt.Sprint(i), true, 5000)) {
				errs <- fmt.Errorf("ReadStderr %d: %d bytes, %v", i, len(r.GetData()), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if f.count() != 150 {
		t.Fatalf("the stdio path served %d reads, want 150", f.count())
	}
}

// Requests the stdio path does not decode exactly as ttrpc would go to
// ttrpc, which here (no sandbox) answers ReadStdout Unimplemented, or
// refuses what does not decode.
func TestStdioPathLeavesTheRestToTTRPC(t *testing.T) {
	f := &fakeStdio{}
	_, c := rawStdioConn(t, f)
	unknown := protowire.AppendVarint(protowire.AppendTag(readPayload(t, &pb.ReadStreamRequest{ContainerId: "c"}), 9, protowire.VarintType), 1)
	badUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff})
	cases := []struct {
		payload []byte
		code    codes.Code
	}{
		{unknown, codes.Unimplemented},
		{badUTF8, codes.InvalidArgument},
	}
	for i, cs := range cases {
		id := uint32(2*i + 1)
		req := marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout", Payload: cs.payload})
		if _, err := c.Write(frame(id, frameRequest, req)); err != nil {
			t.Fatal(err)
		}
		gotID, r := readResponse(t, c)
		if gotID != id || codes.Code(r.Status.GetCode()) != cs.code {
			t.Fatalf("case %d: stream %d status %v, want %v", i, gotID, r.Status, cs.code)
		}
	}
	// A request larger than the intake reads whole goes to ttrpc as well.
	big := marshalRequest(t, &ttrpc.Request{Service: agentServiceName, Method: "ReadStdout",
		Payload: readPayload(t, &pb.ReadStreamRequest{ContainerId: strings.Repeat("x", maxTakenRequest)})})
	if _, err := c.Write(frame(9, frameRequest, big)); err != nil {
		t.Fatal(err)
	}
	if id, r := readResponse(t, c); id != 9 || codes.Code(r.Status.GetCode()) != codes.Unimplemented {
		t.Fatalf("large request: stream %d status %v", id, r.Status)
	}
	if f.count() != 0 {
		t.Fatalf("the stdio path served %d of them", f.count())
	}
}

// ttrpc refuses a request whose stream id is not above every earlier
// one's; the ids of requests the stdio path took count too.
func TestStdioStreamIDsFollowTTRPCsRule(t *testing.T) {
	f := &fakeStdio{}
	_, c := rawStdioConn(t, f)
	read := requestFrame(t, 5, agentServiceName, "ReadStdout", &pb.ReadStreamRequest{ContainerId: "c", Len: 3})
	send := func(b []byte) {
		t.Helper()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	send(read)
	if id, r := readResponse(t, c); id != 5 || r.Status.GetCode() != 0 {
		t.Fatalf("ReadStdout: stream %d status %v", id, r.Status)
	}
	for _, b := range [][]byte{
		requestFrame(t, 5, "grpc.Health", "Check", &pb.CheckRequest{}), // the stdio call's id
		requestFrame(t, 3, "grpc.Health", "Check", &pb.CheckRequest{}), // below it
		read, // the same ReadStdout again
	} {
		send(b)
		id, r := readResponse(t, c)
		want := binary32(b[4:8])
		if id != want || codes.Code(r.Status.GetCode()) != codes.InvalidArgument || !strings.Contains(r.Status.GetMessage(), "StreamID cannot be re-used") {
			t.Fatalf("stream %d: answered on %d with %v", want, id, r.Status)
		}
	}
	send(requestFrame(t, 7, "grpc.Health", "Check", &pb.CheckRequest{}))
	if id, r := readResponse(t, c); id != 7 || r.Status.GetCode() != 0 {
		t.Fatalf("Check after the refusals: stream %d status %v", id, r.Status)
	}
	if f.count() != 1 {
		t.Fatalf("the stdio path served %d reads, want 1", f.count())
	}
}

func binary32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// A read in flight counts as a request without a response (the server's
// stop waits for it), and the connection's end cancels it.
func TestStdioReadInFlight(t *testing.T) {
	entered, released := make(chan struct{}), make(chan error, 1)
	f := &fakeStdio{read: func(ctx context.Context, _, _ string, _ []byte, _, wait bool) (int, error) {
		if !wait {
			return 0, container.ErrNoOutputYet
		}
		close(entered)
		<-ctx.Done()
		released <- ctx.Err()
		return 0, ctx.Err()
	}}
	srv, c := rawStdioConn(t, f)
	if _, err := c.Write(requestFrame(t, 1, agentServiceName, "ReadStdout", &pb.ReadStreamRequest{ContainerId: "c"})); err != nil {
		t.Fatal(err)
	}
	<-entered
	if srvIdle(srv) {
		t.Fatal("a read in flight is not counted")
	}
	c.Close()
	select {
	case err := <-released:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection's end did not cancel the read")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !srvIdle(srv) || srvConns(srv) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the cancelled read is still counted, or its connection tracked")
		}
		time.Sleep(time.Millisecond)
	}
}

// A ttrpc frame whose head went out alone (longer than the coalescing
// writer holds back) is finished before a stdio frame goes out.
func TestStdioFrameWaitsForTTRPCsFrameToEnd(t *testing.T) {
	_, tc, host := pipeConn(t)
	got := make(chan []byte)
	go func() {
		var all []byte
		buf := make([]byte, 64<<10)
		for {
			n, err := host.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				got <- all
				return
			}
		}
	}()
	big := frame(1, frameResponse, bytes.Repeat([]byte{'b'}, 3*maxHeldHead))
	if _, err := tc.Write(big[:2*maxHeldHead]); err != nil {
		t.Fatal(err)
	}
	data := []byte("stdio")
	buf := make([]byte, stdioPrefixMax+len(data))
	copy(buf[stdioPrefixMax:], data)
	small := stdioFrame(buf, 3, len(data))
	wrote := make(chan struct{})
	go func() { tc.writeFrame(small); close(wrote) }()
	select {
	case <-wrote:
		t.Fatal("the stdio frame went out inside ttrpc's")
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := tc.Write(big[2*maxHeldHead:]); err != nil {
		t.Fatal(err)
	}
	<-wrote
	tc.Conn.Close()
	if want := append(append([]byte(nil), big...), small...); !bytes.Equal(<-got, want) {
		t.Fatal("frames interleaved on the connection")
	}
}

func TestWorkerPool(t *testing.T) {
	w := newWorkerPool(20 * time.Millisecond)
	base := runtime.NumGoroutine()
	// A call that waits does not hold up the next: each call in flight
	// has a worker.
	block, blocked := make(chan struct{}), make(chan struct{})
	w.run(func() { close(blocked); <-block })
	<-blocked
	done := make(chan struct{})
	w.run(func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a call waited for another's worker")
	}
	close(block)
	for i := 0; i < 100; i++ {
		ran := make(chan struct{})
		w.run(func() { close(ran) })
		<-ran
	}
	// Idle workers exit.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left, %d before", runtime.NumGoroutine(), base)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The output of a reply the connection did not take is given back (and
// that of one it took is not).
func TestStdioUnsentReplySettledUnsent(t *testing.T) {
	srv, tc, host := pipeConn(t)
	f := &fakeStdio{}
	srv.stdio = f
	go func() { _, _ = io.Copy(io.Discard, host) }()
	r := &stdioRequest{read: pb.ReadStreamRequest{ContainerId: "c", Len: 100}}
	if !tc.serveStdioNow(1, r) {
		t.Fatal("output there, not served at once")
	}
	host.Close()
	if !tc.serveStdioNow(3, r) {
		t.Fatal("output there, not served at once")
	}
	tc.serveStdio(5, r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if fmt.Sprint(f.settled) != "[true false false]" {
		t.Fatalf("settled %v, want [true false false]", f.settled)
	}
}
