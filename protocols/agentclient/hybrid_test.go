package agentclient

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeBackend plays the host side of a hybrid vsock backend: it reads the
// CONNECT line and then does whatever reply says.
func fakeBackend(t *testing.T, reply func(c net.Conn, line string)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hv.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					c.Close()
					return
				}
				reply(c, line)
			}()
		}
	}()
	return path
}

func TestHybridOK(t *testing.T) {
	got := make(chan string, 1)
	path := fakeBackend(t, func(c net.Conn, line string) {
		got <- line
		// Reply and immediately send stream data: the dialer must not
		// swallow bytes after the OK line.
		io.WriteString(c, "OK 1073741824\nhello")
		c.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := DialHybrid(ctx, path, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if line := <-got; line != "CONNECT 1024\n" {
		t.Errorf("backend got %q, want CONNECT 1024", line)
	}
	b, _ := io.ReadAll(conn)
	if string(b) != "hello" {
		t.Errorf("stream data = %q, want hello", b)
	}
}

func TestHybridRefused(t *testing.T) {
	path := fakeBackend(t, func(c net.Conn, _ string) {
		io.WriteString(c, "FAILURE\n")
		c.Close()
	})
	_, err := DialHybrid(context.Background(), path, 1024)
	if !errors.Is(err, ErrHybridRefused) || !strings.Contains(err.Error(), "FAILURE") {
		t.Fatalf("err = %v, want refusal quoting the reply", err)
	}
}

// Only "OK <port>" accepts the connection: replies that merely contain or
// resemble it are refusals.
func TestHybridRepliesThatAreNotOK(t *testing.T) {
	for _, reply := range []string{
		"OKAY", "OKAY 1024", "ok 1024", "OK", "OK ", "OK  1024", "OK +1024", "OK -1", "OK abc",
		"OK 1024 extra", "OK 1024\r", "OK 99999999999", "NOT OK 1024", " OK 1024", "CONNECT FAILED: OK?",
	} {
		path := fakeBackend(t, func(c net.Conn, _ string) {
			io.WriteString(c, reply+"\n")
			c.Close()
		})
		conn, err := DialHybrid(context.Background(), path, 1024)
		if err == nil {
			conn.Close()
			t.Errorf("reply %q accepted", reply)
			continue
		}
		if !errors.Is(err, ErrHybridRefused) || !strings.Contains(err.Error(), strconv.Quote(reply)) {
			t.Errorf("reply %q: err = %v, want a refusal quoting the reply", reply, err)
		}
	}
	for _, reply := range []string{"OK 0", "OK 1073741824", "OK 4294967295"} {
		path := fakeBackend(t, func(c net.Conn, _ string) {
			io.WriteString(c, reply+"\n")
			c.Close()
		})
		conn, err := DialHybrid(context.Background(), path, 1024)
		if err != nil {
			t.Errorf("reply %q refused: %v", reply, err)
			continue
		}
		conn.Close()
	}
}

func TestHybridCloseWithoutReply(t *testing.T) {
	path := fakeBackend(t, func(c net.Conn, _ string) { c.Close() })
	_, err := DialHybrid(context.Background(), path, 1024)
	if !errors.Is(err, ErrHybridRefused) {
		t.Fatalf("err = %v, want ErrHybridRefused", err)
	}
}

func TestHybridTimeout(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	path := fakeBackend(t, func(c net.Conn, _ string) { <-hold; c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := DialHybrid(ctx, path, 1024)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("dial took %v after a 200ms deadline", d)
	}
}

func TestHybridReplyTooLong(t *testing.T) {
	path := fakeBackend(t, func(c net.Conn, _ string) {
		io.WriteString(c, strings.Repeat("x", 1000))
		time.Sleep(time.Second)
		c.Close()
	})
	_, err := DialHybrid(context.Background(), path, 1024)
	if !errors.Is(err, ErrHybridRefused) {
		t.Fatalf("err = %v, want refusal for an endless reply line", err)
	}
}

func TestDialRetriesUntilDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, "unix://"+path)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v, want deadline with the last attempt's cause", err)
	}
}

func TestDialBadAddresses(t *testing.T) {
	for _, a := range []string{"", "tcp://x:1", "hvsock:///p", "hvsock:///p:x", "vsock://a:1", "vsock://3", "unix://"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := Dial(ctx, a)
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Dial(%q) = %v, want an immediate address error", a, err)
		}
	}
}

func TestDialHybridEndToEnd(t *testing.T) {
	// A backend that accepts the handshake and then proxies to a unix
	// socket on which a fake ttrpc peer would be; here we only check the
	// typed clients come back.
	path := fakeBackend(t, func(c net.Conn, _ string) { io.WriteString(c, "OK 5\n") })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := Dial(ctx, "hvsock://"+path+":1024")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Agent == nil || c.Health == nil {
		t.Fatal("missing service clients")
	}
}
