package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPty returns a non-blocking pty master (as receiveMaster makes it)
// and its slave.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	master = os.NewFile(uintptr(fd), "ptmx")
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = slave.Close(); _ = master.Close() })
	return master, slave
}

// One reply carries what is buffered, not one pipe or terminal read's
// worth: a terminal hands its reader at most 4 KiB per read.
func TestReadReturnsAllBuffered(t *testing.T) {
	c, _ := testContainer(t, ExecPolicy{})
	master, slave := openPty(t)
	p := &Process{ID: "tty", tty: true, done: make(chan struct{}), policy: &c.policy, stdin: master, stdout: master}
	want := bytes.Repeat([]byte("0123456789abcdef"), 768) // 12 KiB, no newline
	// The writer blocks once the terminal's queues are full.
	go func() { _, _ = slave.Write(want) }()
	time.Sleep(100 * time.Millisecond) // let the terminal move it to the reader's side
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := readStdout(ctx, p, 32<<10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) <= 4096 {
		t.Fatalf("one read returned %d of the %d buffered bytes", len(got), len(want))
	}
	for len(got) < len(want) {
		more, err := readStdout(ctx, p, 32<<10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, more...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not what was written", len(got))
	}
}

// The drain keeps the read's semantics: it blocks until data or EOF,
// never answers empty, and reports EOF after the last byte.
func TestReadBlocksThenEOF(t *testing.T) {
	c, _ := testContainer(t, ExecPolicy{})
	p, e := testProcess(t, c, "x", false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = e.stdout.WriteString("late")
		_ = e.stdout.Close()
	}()
	got, err := readStdout(ctx, p, 32<<10)
	if err != nil || string(got) != "late" {
		t.Fatalf("read = %q, %v; want \"late\"", got, err)
	}
	if got, err := readStdout(ctx, p, 32<<10); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the writer closed = %q, %v; want EOF", got, err)
	}
	// A cancelled read returns the context's error, not an empty answer.
	p2, _ := testProcess(t, c, "y", false)
	cctx, ccancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer ccancel()
	if got, err := readStdout(cctx, p2, 32<<10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled read = %q, %v; want the context's error", got, err)
	}
}

// ReadForReply without wait reads what is there and never waits: not for
// output, not for another read of the stream; at the end it reports EOF
// as a read does.
func TestTryReadInto(t *testing.T) {
	c, _ := testContainer(t, ExecPolicy{})
	p, e := testProcess(t, c, "x", false)
	buf := make([]byte, 64)
	if n, err := tryReadInto(p, buf, false); !errors.Is(err, ErrNoOutputYet) || n != 0 {
		t.Fatalf("nothing written: %d, %v; want ErrNoOutputYet", n, err)
	}
	// A read waiting on the stream holds it: the try does not wait for it.
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { _, err := readInto(ctx, p, buf[:1], false); waiting <- err }()
	time.Sleep(50 * time.Millisecond)
	if n, err := tryReadInto(p, make([]byte, 8), false); !errors.Is(err, ErrNoOutputYet) || n != 0 {
		t.Fatalf("with a read waiting: %d, %v; want ErrNoOutputYet", n, err)
	}
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting read: %v", err)
	}
	if _, err := e.stdout.WriteString("ready"); err != nil {
		t.Fatal(err)
	}
	if n, err := tryReadInto(p, buf, false); err != nil || string(buf[:n]) != "ready" {
		t.Fatalf("output there: %q, %v", buf[:n], err)
	}
	if n, err := tryReadInto(p, buf, true); !errors.Is(err, ErrNoOutputYet) || n != 0 {
		t.Fatalf("stderr, empty: %d, %v; want ErrNoOutputYet", n, err)
	}
	_ = e.stdout.Close()
	if n, err := tryReadInto(p, buf, false); !errors.Is(err, io.EOF) || n != 0 {
		t.Fatalf("closed: %d, %v; want EOF", n, err)
	}
}

// A reply that could not be sent gives its output back: the next read
// returns it first, then what came after; the stream is the caller's
// until it settles.
func TestReadForReplyUnsentIsReadAgain(t *testing.T) {
	c, _ := testContainer(t, ExecPolicy{})
	p, e := testProcess(t, c, "x", false)
	if _, err := e.stdout.WriteString("first"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, settle, err := p.ReadForReply(context.Background(), buf, false, false)
	if err != nil || string(buf[:n]) != "first" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if n, err := tryReadInto(p, make([]byte, 8), false); !errors.Is(err, ErrNoOutputYet) || n != 0 {
		t.Fatalf("before the settle: %d, %v; want ErrNoOutputYet", n, err)
	}
	if _, err := e.stdout.WriteString("second"); err != nil {
		t.Fatal(err)
	}
	settle(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []byte
	for len(got) < len("firstsecond") {
		more, err := readStdout(ctx, p, 64)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, more...)
	}
	if string(got) != "firstsecond" {
		t.Fatalf("after an unsent reply: %q, want \"firstsecond\"", got)
	}
	// A sent reply is not read again.
	if _, err := e.stdout.WriteString("third"); err != nil {
		t.Fatal(err)
	}
	n, settle, err = p.ReadForReply(ctx, buf, false, true)
	if err != nil || string(buf[:n]) != "third" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	settle(true)
	if n, err := tryReadInto(p, buf, false); !errors.Is(err, ErrNoOutputYet) || n != 0 {
		t.Fatalf("after a sent reply: %q, %v; want ErrNoOutputYet", buf[:n], err)
	}
}

// A sent reply that filled its buffer reads ahead what the pipe holds,
// and every byte still comes out once and in order: through replies that
// went out, and through one that could not be sent.
func TestReadAheadAfterFullReply(t *testing.T) {
	c, _ := testContainer(t, ExecPolicy{})
	p, e := testProcess(t, c, "x", false)
	var want []byte
	for i := 0; i < 110; i++ {
		want = append(want, byte('A'+i%26))
	}
	if _, err := e.stdout.Write(want[:100]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	buf := make([]byte, 40)
	n, settle, err := p.ReadForReply(ctx, buf, false, true)
	if err != nil || n != 40 {
		t.Fatalf("first read: %d, %v", n, err)
	}
	got := append([]byte(nil), buf[:n]...)
	settle(true)
	p.mu.Lock()
	ahead := len(p.out.held)
	p.mu.Unlock()
	if ahead != 60 {
		t.Fatalf("after a full reply %d bytes were read ahead, want the 60 there", ahead)
	}
	if _, err := e.stdout.Write(want[100:]); err != nil {
		t.Fatal(err)
	}
	// A reply from what was read ahead that does not go out is read again.
	small := make([]byte, 30)
	n, settle, err = p.ReadForReply(ctx, small, false, true)
	if err != nil || n != 30 {
		t.Fatalf("read from what was read ahead: %d, %v", n, err)
	}
	settle(false)
	for len(got) < len(want) {
		more, err := readStdout(ctx, p, 40)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, more...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	p.mu.Lock()
	held, pooled := len(p.out.held), p.out.ahead != nil
	p.mu.Unlock()
	if held != 0 || pooled {
		t.Fatalf("after everything was read: %d bytes held, read-ahead buffer kept %v", held, pooled)
	}
	if n, err := tryReadInto(p, buf, false); !errors.Is(err, ErrNoOutputYet) || n != 0 {
		t.Fatalf("at the end: %q, %v; want ErrNoOutputYet", buf[:n], err)
	}
}
