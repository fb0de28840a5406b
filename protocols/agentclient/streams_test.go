package agentclient

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// Each requested stream is its own connection to the listener port, named
// by the host port the backend reported; unrequested ones stay zero.
func TestDialStreamsHybrid(t *testing.T) {
	var next atomic.Uint32
	next.Store(1073741824)
	lines := make(chan string, 3)
	path := fakeBackend(t, func(c net.Conn, line string) {
		lines <- line
		port := next.Add(1)
		fmt.Fprintf(c, "OK %d\n", port)
		fmt.Fprintf(c, "data on %d", port)
		c.Close()
	})
	s, err := DialStreams(context.Background(), "hvsock://"+path+":1024", 1027, false, true, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Stdin != nil || s.StdinPort != 0 {
		t.Errorf("stdin was not requested: %v, port %d", s.Stdin, s.StdinPort)
	}
	if s.StdoutPort == 0 || s.StderrPort == 0 || s.StdoutPort == s.StderrPort {
		t.Fatalf("ports stdout %d, stderr %d: want two distinct host ports", s.StdoutPort, s.StderrPort)
	}
	for i := 0; i < 2; i++ {
		if l := <-lines; l != "CONNECT 1027\n" {
			t.Errorf("backend got %q, want the listener port", l)
		}
	}
	b, _ := io.ReadAll(s.Stdout)
	if string(b) != fmt.Sprintf("data on %d", s.StdoutPort) {
		t.Errorf("stdout connection carries %q, not its own stream (port %d)", b, s.StdoutPort)
	}
	if err := s.CloseStdin(); err != nil {
		t.Errorf("CloseStdin without stdin: %v", err)
	}
}

func TestDialStreamsNeedsVsock(t *testing.T) {
	_, err := DialStreams(context.Background(), "unix:///run/agent.sock", 1027, true, true, true)
	if err == nil || !strings.Contains(err.Error(), "vsock") {
		t.Fatalf("unix address: %v, want an error asking for a vsock address", err)
	}
}
