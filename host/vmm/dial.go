package vmm

import (
	"context"
	"fmt"
	"net"

	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
)

// DialVsock connects to a guest vsock port through the hybrid vsock
// socket (CONNECT <port> / OK <host port>).
func (v *VM) DialVsock(ctx context.Context, port uint32) (net.Conn, error) {
	if v.vsock == nil {
		return nil, fmt.Errorf("vmm: dial vsock port %d: VM has no vsock device", port)
	}
	return agentclient.DialHybrid(ctx, v.paths.hybridVsock, port)
}
