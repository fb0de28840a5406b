//go:build !linux

package hvsock

import (
	"context"
	"errors"
)

// ErrUnsupported is returned on systems other than Linux: the backend needs
// memfd-backed shared memory, eventfds and SCM_RIGHTS as QEMU uses them there.
var ErrUnsupported = errors.New("hvsock: vhost-user-vsock backend needs Linux")

// Backend is unavailable on this system.
type Backend struct{}

// Listen reports ErrUnsupported.
func Listen(vhostSocket, udsPath string, guestCID uint64, opts ...Option) (*Backend, error) {
	return nil, ErrUnsupported
}

// Serve reports ErrUnsupported.
func (b *Backend) Serve(ctx context.Context) error { return ErrUnsupported }

// Close does nothing.
func (b *Backend) Close() error { return nil }
