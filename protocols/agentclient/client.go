// Package agentclient dials a kata agent and hands back typed ttrpc clients
// for its two services.
//
// Addresses:
//
//	vsock://CID:PORT            AF_VSOCK (needs vhost_vsock on the host)
//	hvsock:///path/sock:PORT    hybrid vsock: a Unix socket on which we write
//	                            "CONNECT PORT\n" and expect "OK <host port>\n"
//	unix:///path                a Unix socket (agent on a development host)
//
// Dial retries until its context ends, because the runtime dials while the
// guest is still booting.
package agentclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/ttrpc"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// Client holds one connection to the agent and its service clients.
type Client struct {
	Agent  pb.AgentServiceService
	Health pb.HealthService
	ttrpc  *ttrpc.Client
}

// Close closes the connection.
func (c *Client) Close() error { return c.ttrpc.Close() }

// retryInterval is how long Dial waits between attempts.
const retryInterval = 50 * time.Millisecond

// Dial connects to addr, retrying until ctx ends. The error of the last
// attempt is returned with the context's.
func Dial(ctx context.Context, addr string) (*Client, error) {
	dial, err := dialerFor(addr)
	if err != nil {
		return nil, err
	}
	var last error
	for {
		conn, err := dial(ctx)
		if err == nil {
			tc := ttrpc.NewClient(conn)
			return &Client{
				Agent:  pb.NewAgentServiceClient(tc),
				Health: pb.NewHealthClient(tc),
				ttrpc:  tc,
			}, nil
		}
		last = err
		if errors.Is(err, errPermanent) {
			return nil, err
		}
		t := time.NewTimer(retryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("dial %s: %w (last attempt: %v)", addr, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// errPermanent marks dial failures that retrying cannot fix.
var errPermanent = errors.New("permanent dial failure")

type dialFunc func(ctx context.Context) (net.Conn, error)

func dialerFor(addr string) (dialFunc, error) {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return nil, fmt.Errorf("address %q has no scheme (want vsock://, hvsock:// or unix://)", addr)
	}
	switch scheme {
	case "unix":
		if rest == "" {
			return nil, fmt.Errorf("address %q: empty socket path", addr)
		}
		return func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", rest)
		}, nil
	case "hvsock":
		i := strings.LastIndex(rest, ":")
		if i <= 0 {
			return nil, fmt.Errorf("address %q: want hvsock:///path/to/socket:PORT", addr)
		}
		path := rest[:i]
		port, err := strconv.ParseUint(rest[i+1:], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("address %q: bad port %q", addr, rest[i+1:])
		}
		return func(ctx context.Context) (net.Conn, error) {
			return DialHybrid(ctx, path, uint32(port))
		}, nil
	case "vsock":
		cidStr, portStr, ok := strings.Cut(rest, ":")
		if !ok {
			return nil, fmt.Errorf("address %q: want vsock://CID:PORT", addr)
		}
		cid, err := strconv.ParseUint(cidStr, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("address %q: bad CID %q", addr, cidStr)
		}
		port, err := strconv.ParseUint(portStr, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("address %q: bad port %q", addr, portStr)
		}
		return func(ctx context.Context) (net.Conn, error) {
			return dialVsock(ctx, uint32(cid), uint32(port))
		}, nil
	}
	return nil, fmt.Errorf("address %q: unsupported scheme %q", addr, scheme)
}
