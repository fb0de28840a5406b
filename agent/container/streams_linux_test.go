package container

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/mdlayher/vsock"
)

// portConn is a unix socket that reports a vsock peer port, as an
// accepted vsock connection does.
type portConn struct {
	*net.UnixConn
	port uint32
}

func (c portConn) RemoteAddr() net.Addr { return &vsock.Addr{ContextID: 2, Port: c.port} }

// portListener accepts the connections its test dials.
type portListener struct {
	conns chan net.Conn
	done  chan struct{}
}

func newPortListener() *portListener {
	return &portListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *portListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *portListener) Close() error   { close(l.done); return nil }
func (l *portListener) Addr() net.Addr { return &vsock.Addr{Port: 1027} }

// dial connects as the host would from port and returns the host's end.
func (l *portListener) dial(t *testing.T, port uint32) *net.UnixConn {
	t.Helper()
	a, b, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	l.conns <- portConn{b, port}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func socketPair() (*net.UnixConn, *net.UnixConn, error) {
	dir, err := os.MkdirTemp("", "streams")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/s", Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	defer l.Close()
	a, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	if err != nil {
		return nil, nil, err
	}
	b, err := l.AcceptUnix()
	if err != nil {
		_ = a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// A process given the stream sockets as its stdio talks to the host
// directly: what the host sends arrives on stdin, and stdout carries a
// few MiB intact and ends in EOF when the process exits.
func TestStreamPortsCarryStdio(t *testing.T) {
	l := newPortListener()
	defer l.Close()
	b := NewStreamBroker(l)
	hostIn := l.dial(t, 5001)
	hostOut := l.dial(t, 5002)
	ctx := context.Background()
	st, err := b.Take(ctx, 5001, 5002, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The process echoes stdin's checksum, then writes 4 MiB of zeros.
	cmd := exec.Command("sh", "-c", "sha256sum; head -c 4194304 /dev/zero")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = st.Stdin, st.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Skipf("no shell: %v", err)
	}
	st.Close() // the process has its own copies, as after a container start
	input := []byte("stdin over a stream port\n")
	if _, err := hostIn.Write(input); err != nil {
		t.Fatal(err)
	}
	_ = hostIn.CloseWrite() // the host ends the input
	_ = hostOut.SetReadDeadline(time.Now().Add(30 * time.Second))
	out, err := io.ReadAll(hostOut)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(input)
	line := []byte(hexString(sum[:]) + "  -\n")
	if len(out) != len(line)+4<<20 || string(out[:len(line)]) != string(line) {
		t.Fatalf("host read %d bytes starting %q; want the stdin checksum line and 4 MiB", len(out), out[:min(len(out), 80)])
	}
	for _, c := range out[len(line):] {
		if c != 0 {
			t.Fatal("stdout data corrupted")
		}
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	s := make([]byte, 0, 2*len(b))
	for _, c := range b {
		s = append(s, digits[c>>4], digits[c&15])
	}
	return string(s)
}

// A port no connection came from is the host's mistake, reported after a
// bounded wait; a connection that arrives during the wait is taken.
func TestStreamPortsUnknownAndLate(t *testing.T) {
	l := newPortListener()
	defer l.Close()
	b := NewStreamBroker(l)
	start := time.Now()
	_, err := b.Take(context.Background(), 0, 7000, 0)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("unknown port: %v, want InvalidArgument", err)
	}
	if d := time.Since(start); d > 5*streamWait {
		t.Fatalf("unknown port waited %v", d)
	}
	go func() {
		time.Sleep(streamWait / 3)
		l.dial(t, 7001)
	}()
	st, err := b.Take(context.Background(), 0, 7001, 0)
	if err != nil || st.Stdout == nil {
		t.Fatalf("late connection: %+v, %v", st, err)
	}
	st.Close()
	// Taken once: a second request naming it waits and fails.
	if _, err := b.Take(context.Background(), 0, 7001, 0); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("port taken twice: %v", err)
	}
}
