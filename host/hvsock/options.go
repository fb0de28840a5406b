package hvsock

import (
	"context"
	"log/slog"
	"net"
	"time"
)

// Option tunes a Backend.
type Option func(*options)

type options struct {
	log            *slog.Logger
	bufAlloc       uint32
	maxToGuest     int
	connectTimeout time.Duration
	dial           func(ctx context.Context, path string) (net.Conn, error)
}

func defaultOptions() options {
	return options{
		log:            slog.Default(),
		bufAlloc:       256 * 1024,
		maxToGuest:     64 * 1024,
		connectTimeout: 10 * time.Second,
		dial: func(ctx context.Context, path string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithReceiveBuffer sets the receive window each stream advertises to the
// guest (default 256 KiB): guest data the host has not read yet.
func WithReceiveBuffer(n uint32) Option {
	return func(o *options) {
		if n >= 4096 {
			o.bufAlloc = n
		}
	}
}

// WithSendBuffer sets how many bytes read from a host client may wait for the
// guest before the backend stops reading (default 64 KiB).
func WithSendBuffer(n int) Option {
	return func(o *options) {
		if n >= 4096 {
			o.maxToGuest = n
		}
	}
}

// WithConnectTimeout bounds how long a connection waits for the other side
// to accept it: the guest's RESPONSE, the host listener's accept, and a host
// client's CONNECT line (default 10s).
func WithConnectTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.connectTimeout = d
		}
	}
}
