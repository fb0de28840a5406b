package vmm

import (
	"log/slog"

	"github.com/sandbox-guest/sandbox-guest/host/hvsock"
)

// defaultVsock is the backend used when no WithVsock option is given: the
// project's own vhost-user-vsock backend, in process, logging to log.
func defaultVsock(log *slog.Logger) VsockListener {
	return HVSock(hvsock.WithLogger(log))
}

// HVSock is a VsockListener running host/hvsock in this process with opts.
func HVSock(opts ...hvsock.Option) VsockListener {
	return func(vhostSocket, udsPath string, guestCID uint64) (VsockBackend, error) {
		b, err := hvsock.Listen(vhostSocket, udsPath, guestCID, opts...)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
}
