package hvsock

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

const maxConnectLine = 64

// ErrBadConnect reports a host client whose first line is not "CONNECT <port>".
var ErrBadConnect = errors.New("bad CONNECT line")

// parseConnect parses the hybrid vsock request line (without its newline).
func parseConnect(line string) (uint32, error) {
	line = strings.TrimSuffix(line, "\r")
	rest, ok := strings.CutPrefix(line, "CONNECT ")
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrBadConnect, line)
	}
	port, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: port in %q: %w", ErrBadConnect, line, err)
	}
	return uint32(port), nil
}

// readLine reads up to and including '\n' one byte at a time, so that no byte
// of the stream that follows is consumed.
func readLine(nc net.Conn) (string, error) {
	var line []byte
	var b [1]byte
	for len(line) < maxConnectLine {
		if _, err := nc.Read(b[:]); err != nil {
			return "", fmt.Errorf("read CONNECT line: %w", err)
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", fmt.Errorf("%w: longer than %d bytes", ErrBadConnect, maxConnectLine)
}

// hostSide accepts host clients on the hybrid vsock Unix socket.
type hostSide struct {
	ln      net.Listener
	mux     *mux
	timeout time.Duration

	mu      sync.Mutex
	pending map[net.Conn]struct{} // clients still sending their CONNECT line
	closed  bool
	wg      sync.WaitGroup
}

func (h *hostSide) start() {
	h.pending = make(map[net.Conn]struct{})
	h.wg.Add(1)
	go h.acceptLoop()
}

func (h *hostSide) acceptLoop() {
	defer h.wg.Done()
	for {
		nc, err := h.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if !errors.Is(err, net.ErrClosed) {
				h.mux.log.Warn("vsock: accept host client", "err", err)
			}
			return
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			_ = nc.Close()
			return
		}
		h.pending[nc] = struct{}{}
		h.wg.Add(1)
		h.mu.Unlock()
		go h.handshake(nc)
	}
}

func (h *hostSide) handshake(nc net.Conn) {
	defer h.wg.Done()
	_ = nc.SetReadDeadline(time.Now().Add(h.timeout))
	line, err := readLine(nc)
	var port uint32
	if err == nil {
		port, err = parseConnect(line)
	}
	_ = nc.SetReadDeadline(time.Time{})
	h.mu.Lock()
	delete(h.pending, nc)
	closed := h.closed
	h.mu.Unlock()
	if err == nil && closed {
		err = ErrClosed
	}
	if err == nil {
		err = h.mux.connectHost(nc, port)
	}
	if err != nil {
		h.mux.log.Debug("vsock: host client rejected", "err", err)
		_ = nc.Close()
	}
}

// close stops accepting, drops clients mid-handshake and waits for the
// accept and handshake goroutines.
func (h *hostSide) close() {
	_ = h.ln.Close()
	h.mu.Lock()
	h.closed = true
	for nc := range h.pending {
		_ = nc.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}
