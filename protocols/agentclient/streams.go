package agentclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/mdlayher/vsock"
)

// Streams are the host ends of stream-port connections: stdio carried on
// dedicated connections to the agent's stream listener
// (agent.passfd_listener_port) instead of ReadStdout/WriteStdin. Put the
// ports in CreateContainerRequest/ExecProcessRequest; the agent gives
// each connection to the process as that stdio fd. Read Stdout/Stderr to
// EOF; CloseStdin ends the process's input.
type Streams struct {
	Stdin, Stdout, Stderr             net.Conn // nil: not requested
	StdinPort, StdoutPort, StderrPort uint32   // host-side ports; 0: not requested
}

// DialStreams connects one stream per requested stdio to the stream
// listener port of the guest that addr (vsock://CID:PORT or
// hvsock:///path:PORT; its PORT is the agent's and not used) reaches.
func DialStreams(ctx context.Context, addr string, listenerPort uint32, stdin, stdout, stderr bool) (*Streams, error) {
	dial, err := streamDialerFor(addr)
	if err != nil {
		return nil, err
	}
	s := &Streams{}
	for _, w := range []struct {
		want bool
		c    *net.Conn
		port *uint32
	}{{stdin, &s.Stdin, &s.StdinPort}, {stdout, &s.Stdout, &s.StdoutPort}, {stderr, &s.Stderr, &s.StderrPort}} {
		if !w.want {
			continue
		}
		c, local, err := dial(ctx, listenerPort)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("stream port listener %d: %w", listenerPort, err)
		}
		*w.c, *w.port = c, local
	}
	return s, nil
}

// CloseStdin half-closes the stdin connection: the process reads EOF.
func (s *Streams) CloseStdin() error {
	if s.Stdin == nil {
		return nil
	}
	if cw, ok := s.Stdin.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return s.Stdin.Close()
}

// Close closes every connection.
func (s *Streams) Close() error {
	var errs []error
	for _, c := range []net.Conn{s.Stdin, s.Stdout, s.Stderr} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

type streamDialFunc func(ctx context.Context, port uint32) (net.Conn, uint32, error)

func streamDialerFor(addr string) (streamDialFunc, error) {
	scheme, rest, _ := strings.Cut(addr, "://")
	switch scheme {
	case "hvsock":
		i := strings.LastIndex(rest, ":")
		if i <= 0 {
			return nil, fmt.Errorf("address %q: want hvsock:///path/to/socket:PORT", addr)
		}
		path := rest[:i]
		return func(ctx context.Context, port uint32) (net.Conn, uint32, error) {
			return DialHybridPort(ctx, path, port)
		}, nil
	case "vsock":
		cidStr, _, _ := strings.Cut(rest, ":")
		cid, err := strconv.ParseUint(cidStr, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("address %q: bad CID %q", addr, cidStr)
		}
		return func(ctx context.Context, port uint32) (net.Conn, uint32, error) {
			c, err := dialVsock(ctx, uint32(cid), port)
			if err != nil {
				return nil, 0, err
			}
			a, ok := c.LocalAddr().(*vsock.Addr)
			if !ok {
				c.Close()
				return nil, 0, fmt.Errorf("vsock connection has local address %v", c.LocalAddr())
			}
			return c, a.Port, nil
		}, nil
	}
	return nil, fmt.Errorf("address %q: stream ports need a vsock:// or hvsock:// address", addr)
}
