package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
)

// countingWriter records each Write it gets.
type countingWriter struct {
	writes [][]byte
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

type frameWriterConn struct {
	w   io.Writer
	out frameWriter
}

func (c *frameWriterConn) Write(p []byte) (int, error) { return c.out.write(c.w, p) }

// sendLikeTTRPC writes a frame the way ttrpc's channel.send does: header
// and payload through a 4 KiB bufio.Writer, then Flush.
func sendLikeTTRPC(t *testing.T, bw *bufio.Writer, id uint32, payload []byte) {
	t.Helper()
	f := frame(id, frameResponse, payload)
	if _, err := bw.Write(f[:frameHeaderLen]); err != nil {
		t.Fatal(err)
	}
	if _, err := bw.Write(f[frameHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// A 32 KiB reply (ReadStdout at the shim's read size) reaches the
// connection in one write, not bufio's 4 KiB and then the rest.
func TestFrameWriterOneWritePerLargeFrame(t *testing.T) {
	cw := &countingWriter{}
	bw := bufio.NewWriterSize(&frameWriterConn{w: cw}, 4096)
	payload := bytes.Repeat([]byte("x"), 32<<10)
	sendLikeTTRPC(t, bw, 1, payload)
	if len(cw.writes) != 1 {
		t.Fatalf("%d writes, want 1", len(cw.writes))
	}
	if want := frame(1, frameResponse, payload); !bytes.Equal(cw.writes[0], want) {
		t.Fatal("frame changed on its way out")
	}
	// Small frames go out as they come, each complete.
	sendLikeTTRPC(t, bw, 3, []byte("small"))
	sendLikeTTRPC(t, bw, 5, nil)
	if len(cw.writes) != 3 || !bytes.Equal(cw.writes[1], frame(3, frameResponse, []byte("small"))) ||
		!bytes.Equal(cw.writes[2], frame(5, frameResponse, nil)) {
		t.Fatalf("small frames: %d writes", len(cw.writes))
	}
}

// A write that completes a frame is never held, even when it also starts
// the next one: no finished reply waits for a later write.
func TestFrameWriterHoldsOnlyAFramesHead(t *testing.T) {
	cw := &countingWriter{}
	fw := &frameWriterConn{w: cw}
	a := frame(1, frameResponse, []byte("done"))
	b := frame(3, frameResponse, []byte("second"))
	p := append(bytes.Clone(a), b[:4]...)
	if n, err := fw.Write(p); n != len(p) || err != nil {
		t.Fatalf("write = %d, %v", n, err)
	}
	if len(cw.writes) != 1 || !bytes.Equal(cw.writes[0], p) {
		t.Fatalf("a write ending a frame was held: %d writes", len(cw.writes))
	}
	if _, err := fw.Write(b[4:]); err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(cw.writes, nil); !bytes.Equal(got, append(bytes.Clone(a), b...)) {
		t.Fatal("bytes changed or lost")
	}
}

// writesCounted hides nothing of the socket but counts Write calls: the
// gathered write goes around Write (one writev), so none is counted.
type writesCounted struct {
	*net.UnixConn
	n int
}

func (w *writesCounted) Write(p []byte) (int, error) { w.n++; return w.UnixConn.Write(p) }

func TestFrameWriterGathersOnSockets(t *testing.T) {
	fds, err := socketPair(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	guest, host := fds[0], fds[1]
	defer guest.Close()
	defer host.Close()
	wc := &writesCounted{UnixConn: guest}
	bw := bufio.NewWriterSize(&frameWriterConn{w: wc}, 4096)
	payload := bytes.Repeat([]byte("y"), 32<<10)
	want := frame(7, frameResponse, payload)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(want))
		_, err := io.ReadFull(host, b)
		if err != nil {
			b = nil
		}
		got <- b
	}()
	sendLikeTTRPC(t, bw, 7, payload)
	if !bytes.Equal(<-got, want) {
		t.Fatal("frame changed on its way out")
	}
	if wc.n != 0 {
		t.Fatalf("%d plain writes, want the head and the rest in one writev", wc.n)
	}
}

func socketPair(dir string) ([2]*net.UnixConn, error) {
	var out [2]*net.UnixConn
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/s", Net: "unix"})
	if err != nil {
		return out, err
	}
	defer l.Close()
	acc := make(chan *net.UnixConn, 1)
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			c = nil
		}
		acc <- c
	}()
	c, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	if err != nil {
		return out, err
	}
	out[0], out[1] = c, <-acc
	return out, nil
}
