package vmm

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// DialVsock connects to guest port through the hybrid vsock socket
// (CONNECT <port> / OK <host port>).
func (v *VM) DialVsock(ctx context.Context, port uint32) (net.Conn, error) {
	if v.vsock == nil {
		return nil, fmt.Errorf("vmm: dial vsock port %d: VM has no vsock device", port)
	}
	return DialHybridVsock(ctx, v.paths.hybridVsock, port)
}

// DialHybridVsock connects to port through the hybrid vsock Unix socket
// at path, the way Kata's hvsock:// dialer does.
func DialHybridVsock(ctx context.Context, path string, port uint32) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial hybrid vsock %s: %w", path, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		conn.Close()
		return nil, fmt.Errorf("hybrid vsock %s port %d: send CONNECT: %w", path, port, err)
	}
	// Read byte by byte so nothing after the reply line is consumed.
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := conn.Read(b); err != nil {
			conn.Close()
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("hybrid vsock %s port %d: read reply: %w", path, port, err)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
		if len(line) > 64 {
			conn.Close()
			return nil, fmt.Errorf("hybrid vsock %s port %d: reply too long: %q", path, port, line)
		}
	}
	if !strings.HasPrefix(string(line), "OK ") {
		conn.Close()
		return nil, fmt.Errorf("hybrid vsock %s port %d: unexpected reply %q", path, port, line)
	}
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("hybrid vsock %s port %d: %w", path, port, ctx.Err())
	}
	return conn, nil
}
