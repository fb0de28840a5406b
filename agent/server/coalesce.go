package server

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// frameWriter puts each ttrpc frame on the connection with one system
// call. ttrpc writes through a 4 KiB bufio.Writer, so a reply larger than
// that reaches the connection in two writes: the buffer's first 4 KiB,
// then the rest. Under TCG every write on a vsock costs about a
// millisecond of the guest's CPU (measured with BenchmarkReadStdoutProfile:
// the 4 KiB write cost more than the 28 KiB one), so a ReadStdout reply of
// 32 KiB paid twice. The head of a frame that a write leaves incomplete is
// held (at most maxHeldHead bytes) and goes out with the rest, gathered by
// writev where the connection allows it, else copied.
type frameWriter struct {
	pos  frameScanner // where the bytes accepted so far end
	held []byte
}

// betweenFrames reports whether the bytes on the connection end at a frame
// boundary: no frame begun, or all of the begun one held back.
func (f *frameWriter) betweenFrames() bool {
	return f.pos.nhdr == 0 || len(f.held) > 0
}

// maxHeldHead bounds what is held back: ttrpc's buffer size (4 KiB) and a
// frame header.
const maxHeldHead = 8 << 10

func (f *frameWriter) write(w io.Writer, p []byte) (int, error) {
	// Only the head of one frame is held: p starts a frame and does not
	// finish it (bufio's first flush of a large reply). A write that
	// finishes a frame goes out at once, so no complete reply waits.
	starts := f.pos.nhdr == 0
	ends := false
	f.pos.scan(p, func(uint32, byte, []byte) { ends = true })
	if starts && !ends && len(f.held) == 0 && len(p) <= maxHeldHead {
		f.held = append(f.held, p...)
		return len(p), nil
	}
	if len(f.held) == 0 {
		return w.Write(p)
	}
	held := len(f.held)
	n, err := writeBoth(w, f.held, p)
	f.held = f.held[:0]
	// The held bytes were reported written when they were accepted.
	if n < held {
		return 0, err
	}
	return n - held, err
}

// writeBoth writes a then b in one system call where w is a socket (or
// another descriptor), else as one copied buffer.
func writeBoth(w io.Writer, a, b []byte) (int, error) {
	sc, ok := w.(syscall.Conn)
	if !ok {
		return w.Write(append(a[:len(a):len(a)], b...))
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return w.Write(append(a[:len(a):len(a)], b...))
	}
	bufs := [][]byte{a, b}
	total := 0
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for len(bufs) > 0 {
			n, err := unix.Writev(int(fd), bufs)
			if n > 0 {
				total += n
				bufs = consumed(bufs, n)
			}
			switch {
			case err == unix.EINTR:
			case err == unix.EAGAIN:
				return false // wait until writable
			case err != nil:
				werr = err
				return true
			}
		}
		return true
	})
	if werr != nil {
		return total, werr
	}
	return total, err
}

// consumed drops the first n bytes of bufs.
func consumed(bufs [][]byte, n int) [][]byte {
	for len(bufs) > 0 && n >= len(bufs[0]) {
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	if len(bufs) > 0 {
		bufs[0] = bufs[0][n:]
	}
	return bufs
}
