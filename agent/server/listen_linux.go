package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/mdlayher/vsock"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
)

// Listen opens the listener for a configured address. A stale Unix socket
// left by an earlier run is removed first.
func Listen(a config.Addr) (net.Listener, error) {
	switch a.Scheme {
	case "vsock":
		l, err := vsock.ListenContextID(a.CID, a.Port, nil)
		if err != nil {
			return nil, fmt.Errorf("listen on vsock port %d: %w", a.Port, err)
		}
		return l, nil
	case "unix":
		if err := os.MkdirAll(filepath.Dir(a.Path), 0o755); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", a.Path, err)
		}
		if err := os.Remove(a.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", a.Path, err)
		}
		l, err := net.Listen("unix", a.Path)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", a.Path, err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("listen: unsupported scheme %q", a.Scheme)
}
