package server

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// The stdio path serves ReadStdout and ReadStderr beside the ttrpc server,
// on the same connections and with the same bytes on the wire. The shim
// reads a container's output 32 KiB per call; under TCG, going through
// ttrpc cost about 2 ms of the guest's CPU per call (a goroutine and a
// stack to grow per request, the reply marshalled twice, about 100 KiB
// allocated and collected); here it is about 0.5 ms, two thirds of it the
// system calls themselves. The output is read from the process's pipe
// straight into a pooled buffer laid out as the response frame, and
// written with one system call.
//
// The intake (intake.go) hands the path only requests it decodes exactly
// as ttrpc and protobuf would; anything else goes to ttrpc, which answers
// it as before. Errors take the same mapping and logging as ttrpc's calls
// (errors.go). Frames leave whole: a response written here waits until
// ttrpc's writer is between frames (trackedConn.writeFrame).

const (
	readStdoutMethod  = "ReadStdout"
	readStderrMethod  = "ReadStderr"
	readStdoutPath    = "/" + agentServiceName + "/" + readStdoutMethod
	readStderrPath    = "/" + agentServiceName + "/" + readStderrMethod
	stdioPrefixMax    = frameHeaderLen + 2 + 2*(1+binary.MaxVarintLen32)
	pooledStdioBuffer = 64 << 10
)

// stdioReader reads a process's output into a caller's buffer; without
// wait only output already there, else container.ErrNoOutputYet
// (containerHandlers.readStream). The caller calls settle (never nil)
// once it knows whether its reply went out: what could not be sent is
// read again by the next read.
type stdioReader interface {
	readStream(ctx context.Context, containerID, execID string, buf []byte, stderr, wait bool) (n int, settle func(sent bool), err error)
}

// stdioRequest is a ReadStdout or ReadStderr call taken by the stdio path.
type stdioRequest struct {
	stderr  bool
	timeout time.Duration // ttrpc's timeout_nano; 0: none
	read    pb.ReadStreamRequest
}

func (r *stdioRequest) method() string {
	if r.stderr {
		return readStderrPath
	}
	return readStdoutPath
}

// parseStdioRequest decodes the payload of a ttrpc request frame when it
// is a ReadStdout or ReadStderr call; it is nil for any other call and
// for anything it would not decode exactly as ttrpc does (unknown fields,
// wire types it does not expect, strings that are not UTF-8), which is
// then ttrpc's to answer.
func parseStdioRequest(b []byte) *stdioRequest {
	var service, method, payload []byte
	var timeout int64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		switch {
		case num == 4 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil
			}
			timeout, b = int64(v), b[n:]
			continue
		case num < 1 || num > 5 || typ != protowire.BytesType:
			return nil
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		switch num {
		case 1:
			service = v
		case 2:
			method = v
		case 3:
			payload = v
		case 5:
			if !validKeyValue(v) {
				return nil
			}
		}
	}
	r := &stdioRequest{timeout: time.Duration(timeout)}
	if string(service) != agentServiceName {
		return nil
	}
	switch string(method) {
	case readStdoutMethod:
	case readStderrMethod:
		r.stderr = true
	default:
		return nil
	}
	if !parseReadStream(payload, &r.read) {
		return nil
	}
	return r
}

// validKeyValue reports whether b decodes as ttrpc's KeyValue metadata
// entry (key = 1, value = 2, UTF-8 strings). The stdio calls read no
// metadata, but ttrpc refuses a request whose metadata does not decode.
func validKeyValue(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || (num != 1 && num != 2) || typ != protowire.BytesType {
			return false
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 || !utf8.Valid(v) {
			return false
		}
		b = b[n+m:]
	}
	return true
}

// parseReadStream decodes a ReadStreamRequest (container_id = 1,
// exec_id = 2, len = 3).
func parseReadStream(b []byte, r *pb.ReadStreamRequest) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num == 3 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			r.Len, b = uint32(v), b[n:]
			continue
		}
		if (num != 1 && num != 2) || typ != protowire.BytesType {
			return false
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 || !utf8.Valid(v) {
			return false
		}
		b = b[n:]
		if num == 1 {
			r.ContainerId = string(v)
		} else {
			r.ExecId = string(v)
		}
	}
	return true
}

// stdioFrame lays out the response frame for stream id around the n bytes
// of output at buf[stdioPrefixMax:]: ttrpc's Response with an OK status
// and, as its payload, a ReadStreamResponse with the bytes as data (bytes
// for bytes what ttrpc writes). It returns the frame, a slice of buf.
func stdioFrame(buf []byte, id uint32, n int) []byte {
	var t [stdioPrefixMax - frameHeaderLen]byte
	body := append(t[:0], 0x0a, 0x00) // status = 1: an empty (OK) Status
	if n > 0 {
		inner := protowire.SizeTag(1) + protowire.SizeBytes(n)
		body = protowire.AppendTag(body, 2, protowire.BytesType)
		body = protowire.AppendVarint(body, uint64(inner))
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendVarint(body, uint64(n))
	}
	start := stdioPrefixMax - frameHeaderLen - len(body)
	frame := buf[start : stdioPrefixMax+n]
	binary.BigEndian.PutUint32(frame[0:4], uint32(len(body)+n))
	binary.BigEndian.PutUint32(frame[4:8], id)
	frame[8], frame[9] = frameResponse, 0
	copy(frame[frameHeaderLen:], body)
	return frame
}

// statusFrame is the response frame carrying err's status.
func statusFrame(id uint32, err error) []byte {
	st, _ := status.FromError(err)
	p, merr := proto.Marshal(&ttrpc.Response{Status: st.Proto()})
	if merr != nil {
		p, _ = proto.Marshal(&ttrpc.Response{Status: status.New(codes.Internal, "marshal status").Proto()})
	}
	frame := make([]byte, frameHeaderLen, frameHeaderLen+len(p))
	binary.BigEndian.PutUint32(frame[0:4], uint32(len(p)))
	binary.BigEndian.PutUint32(frame[4:8], id)
	frame[8] = frameResponse
	return append(frame, p...)
}

// refusalFrame is ttrpc's answer to a request that reuses a stream id.
func refusalFrame(id uint32) []byte {
	return statusFrame(id, status.Error(codes.InvalidArgument, "StreamID cannot be re-used and must increment"))
}

// workerPool runs the stdio path's calls. A goroutine per call starts with
// a small stack and grew it on every call (copying stacks was a tenth of
// the agent's CPU serving the ReadStdout row under TCG); a worker keeps
// its grown stack for the next call. Workers exit after idle without a
// call, so an idle agent keeps none; there are as many as calls in
// flight at once.
type workerPool struct {
	idle  time.Duration
	tasks chan func() // unbuffered: a send succeeds when a worker waits
}

// stdioWorkerIdle is how long a worker waits for the next call: longer
// than the gap between a reader's calls.
const stdioWorkerIdle = time.Second

func newWorkerPool(idle time.Duration) *workerPool {
	return &workerPool{idle: idle, tasks: make(chan func())}
}

// run runs task on a waiting worker, or on a new one.
func (w *workerPool) run(task func()) {
	select {
	case w.tasks <- task:
	default:
		go w.work(task)
	}
}

func (w *workerPool) work(task func()) {
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		task()
		t.Reset(w.idle)
		select {
		case task = <-w.tasks:
		case <-t.C:
			return
		}
	}
}

var stdioBuffers = sync.Pool{New: func() any {
	b := make([]byte, stdioPrefixMax+pooledStdioBuffer)
	return &b
}}

// serveStdioNow answers a taken request at once, in the intake's
// goroutine, when its output is already there (or it fails at once), and
// reports whether it did. Most reads of a busy stream find output: this
// spares them a worker's wake-up and the timer of the request's deadline,
// which only a wait needs.
func (c *trackedConn) serveStdioNow(id uint32, r *stdioRequest) bool {
	if r.timeout < 0 {
		return false // expired already: the worker answers as a wait would
	}
	buf, pooled := stdioBuffer(container.ReadLen(int(r.read.Len)))
	if pooled != nil {
		defer stdioBuffers.Put(pooled)
	}
	n, settle, err := c.srv.readStdio(context.Background(), r, buf[stdioPrefixMax:], false)
	switch {
	case errors.Is(err, container.ErrNoOutputYet):
		return false
	case err != nil:
		c.writeFrame(statusFrame(id, err))
	default:
		settle(c.writeFrame(stdioFrame(buf, id, n)))
	}
	return true
}

// serveStdio answers a taken request on c, waiting for output.
func (c *trackedConn) serveStdio(id uint32, r *stdioRequest) {
	ctx, cancel := c.ctx, context.CancelFunc(func() {})
	if r.timeout != 0 {
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
	}
	defer cancel()
	buf, pooled := stdioBuffer(container.ReadLen(int(r.read.Len)))
	if pooled != nil {
		defer stdioBuffers.Put(pooled)
	}
	n, settle, err := c.srv.readStdio(ctx, r, buf[stdioPrefixMax:], true)
	if err != nil {
		c.writeFrame(statusFrame(id, err))
		return
	}
	settle(c.writeFrame(stdioFrame(buf, id, n)))
}

// stdioBuffer is a buffer for a reply of want bytes, laid out for
// stdioFrame: from the pool (returned as pooled, to put back) when it
// fits.
func stdioBuffer(want int) (buf []byte, pooled *[]byte) {
	if want > pooledStdioBuffer {
		return make([]byte, stdioPrefixMax+want), nil
	}
	pooled = stdioBuffers.Get().(*[]byte)
	return (*pooled)[:stdioPrefixMax+want], pooled
}

// readStdio runs the read as the interceptor runs a ttrpc call: errors
// mapped and logged, a panic answered Internal. Without wait, it returns
// container.ErrNoOutputYet as it is. settle is never nil.
func (s *Server) readStdio(ctx context.Context, r *stdioRequest, buf []byte, wait bool) (n int, settle func(sent bool), err error) {
	settle = noSettle
	defer func() {
		if p := recover(); p != nil {
			n, err = 0, panicked(s.log, r.method(), p, &r.read)
		}
	}()
	n, settle, err = s.stdio.readStream(ctx, r.read.ContainerId, r.read.ExecId, buf, r.stderr, wait)
	switch {
	case err == nil:
		return n, settle, nil
	case !wait && errors.Is(err, container.ErrNoOutputYet):
		return 0, settle, err
	}
	return 0, settle, failed(ctx, s.log, r.method(), err, &r.read)
}
