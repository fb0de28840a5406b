package agentclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxReplyLine bounds the hybrid vsock reply; a real one is "OK 1073741824\n".
const maxReplyLine = 64

// handshakeTimeout bounds the CONNECT/OK exchange when ctx has no deadline,
// so a backend that accepts and never answers cannot hang the caller.
const handshakeTimeout = 5 * time.Second

// ErrHybridRefused is returned when the backend answers something other
// than OK, or closes the connection, typically because nothing listens on
// that port in the guest yet.
var ErrHybridRefused = errors.New("hybrid vsock connect refused")

// DialHybrid connects to port in the guest through a hybrid vsock Unix
// socket (the Firecracker / Cloud Hypervisor convention).
func DialHybrid(ctx context.Context, path string, port uint32) (net.Conn, error) {
	c, _, err := DialHybridPort(ctx, path, port)
	return c, err
}

// DialHybridPort is DialHybrid that also returns the host-side port the
// backend reported ("OK <port>"), the peer port the guest sees.
func DialHybridPort(ctx context.Context, path string, port uint32) (net.Conn, uint32, error) {
	conn, err := dialHybrid(ctx, path, port)
	if err != nil {
		return nil, 0, err
	}
	return conn.Conn, conn.local, nil
}

type hybridConn struct {
	net.Conn
	local uint32
}

func dialHybrid(ctx context.Context, path string, port uint32) (*hybridConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("hybrid vsock %s: %w", path, err)
	}
	deadline := time.Now().Add(handshakeTimeout)
	ctxDeadline := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, ctxDeadline = d, true
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		conn.Close()
		return nil, fmt.Errorf("hybrid vsock %s port %d: send CONNECT: %w", path, port, err)
	}
	// Read byte by byte: anything after the newline belongs to the stream.
	var line []byte
	buf := make([]byte, 1)
	for {
		_, err := conn.Read(buf)
		if err != nil {
			conn.Close()
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("hybrid vsock %s port %d: closed before reply: %w", path, port, ErrHybridRefused)
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("hybrid vsock %s port %d: %w", path, port, ctx.Err())
			}
			if ctxDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
				// The socket deadline is the context's; its timer may
				// not have fired yet.
				return nil, fmt.Errorf("hybrid vsock %s port %d: %w", path, port, context.DeadlineExceeded)
			}
			return nil, fmt.Errorf("hybrid vsock %s port %d: read reply: %w", path, port, err)
		}
		if buf[0] == '\n' {
			break
		}
		line = append(line, buf[0])
		if len(line) > maxReplyLine {
			conn.Close()
			return nil, fmt.Errorf("hybrid vsock %s port %d: reply line too long: %w", path, port, ErrHybridRefused)
		}
	}
	if !validOK(string(line)) {
		conn.Close()
		return nil, fmt.Errorf("hybrid vsock %s port %d: reply %q, want \"OK <port>\": %w", path, port, string(line), ErrHybridRefused)
	}
	_ = conn.SetDeadline(time.Time{})
	local, _ := strconv.ParseUint(strings.TrimPrefix(string(line), "OK "), 10, 32)
	return &hybridConn{conn, uint32(local)}, nil
}

// validOK reports whether line (without its newline) is the backend's
// acceptance: "OK " and the port number the host side of the connection
// got, nothing else. An error text that merely contains "OK" is not one.
func validOK(line string) bool {
	num, ok := strings.CutPrefix(line, "OK ")
	if !ok || num == "" || num[0] < '0' || num[0] > '9' {
		return false
	}
	_, err := strconv.ParseUint(num, 10, 32)
	return err == nil
}
