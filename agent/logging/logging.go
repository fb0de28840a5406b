// Package logging builds the agent's JSON logger. Logs go to the console,
// or, with agent.log_vport, to whichever host connection is attached to
// that vsock port (the console keeps them while none is).
package logging

import (
	"io"
	"log/slog"
	"sync"
)

// New returns a JSON logger at level writing to w.
func New(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// Switch is a writer whose destination can change while logging goes on.
// A failed write to the current destination drops it and falls back, so a
// host that disconnects never blocks or loses the agent's logs.
type Switch struct {
	mu       sync.Mutex
	fallback io.Writer
	current  io.WriteCloser
}

// NewSwitch writes to fallback until Attach is called.
func NewSwitch(fallback io.Writer) *Switch { return &Switch{fallback: fallback} }

// Attach makes w the destination, closing the previous one.
func (s *Switch) Attach(w io.WriteCloser) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != nil {
		s.current.Close()
	}
	s.current = w
}

// Write implements io.Writer. slog calls it once per record.
func (s *Switch) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != nil {
		if _, err := s.current.Write(p); err == nil {
			return len(p), nil
		}
		s.current.Close()
		s.current = nil
	}
	return s.fallback.Write(p)
}
