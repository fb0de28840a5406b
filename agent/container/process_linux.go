package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/reaper"
)

// MaxReadLen caps one ReadStdout/ReadStderr reply well below ttrpc's
// 4 MiB message limit.
const MaxReadLen = 1 << 20

// defaultReadLen is used when the host asks for zero bytes.
const defaultReadLen = 32 << 10

// ErrNoOutputYet is returned by ReadForReply without wait when a read
// would have to wait for output.
var ErrNoOutputYet = errors.New("no output buffered yet")

// ErrStdinClosed is returned by WriteStdin after CloseStdin.
var ErrStdinClosed = fmt.Errorf("stdin is closed: %w", errdefs.ErrFailedPrecondition)

// Process is one process of a container: its init or an exec'd process.
type Process struct {
	ID   string // exec id; the container id for the init process
	Init bool
	tty  bool

	lp  *libcontainer.Process
	pid int

	// Host-side stdio ends. With a terminal, stdout is the pty master and
	// stdin is the same file; stderr is nil.
	stdin  *os.File
	stdout *os.File
	stderr *os.File

	done     chan struct{} // closed once the process has been waited for
	exitCode int32         // valid after done

	policy *ExecPolicy // the container's

	mu          sync.Mutex
	stdinClosed bool
	waited      bool // a WaitProcess call got the exit status
	closed      bool
	// The reading side of stdout and stderr.
	out, errs output
	// Release after the wait (release_linux.go).
	releaseTimer       Timer
	waitedAt, lastData time.Time
}

// output is what the agent keeps about reading one output stream. eof
// and held are guarded by Process.mu.
type output struct {
	eof bool
	// Output read for a call cancelled meanwhile (its connection went):
	// the next read returns it first.
	held []byte
	// The pooled buffer that held is a slice of when the output was read
	// ahead (readAhead); nil otherwise. Non-nil only while held is not
	// empty.
	ahead *[]byte
	// One read of a stream at a time: a dead connection's late read and
	// the next connection's must neither reorder the output nor cut each
	// other short with their cancellation deadline.
	reading sync.Mutex
}

// releaseAheadLocked puts the read-ahead buffer back once held no longer
// points into it. Called with Process.mu held.
func (o *output) releaseAheadLocked() {
	if o.ahead != nil {
		aheadBuffers.Put(o.ahead)
		o.ahead = nil
	}
}

// Pid is the process id in the agent's pid namespace.
func (p *Process) Pid() int { return p.pid }

// Exited reports whether the process has been waited for.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until the process exits or ctx ends and returns the exit
// code, or 128 + signal number when a signal killed it.
func (p *Process) Wait(ctx context.Context) (int32, error) {
	select {
	case <-p.done:
		return p.exitCode, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// drainedLocked reports whether every output stream is at EOF (or
// closed). Called with p.mu held.
func (p *Process) drainedLocked() bool {
	return p.closed || ((p.stdout == nil || p.out.eof) && (p.tty || p.stderr == nil || p.errs.eof))
}

// ExitStatus converts a wait status to the code the runtime expects.
func ExitStatus(ws syscall.WaitStatus) int32 {
	if ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(ws.ExitStatus())
}

// waitLoop waits for the process through libcontainer (which owns the
// pid), records the status and hands the pid back to the reaper.
func (p *Process) waitLoop(disown func(int)) {
	awaitExit(p.pid)
	st, err := p.lp.Wait()
	var ee interface{ Sys() any }
	code := int32(255)
	switch {
	case st != nil:
		if ws, ok := st.Sys().(syscall.WaitStatus); ok {
			code = ExitStatus(ws)
		}
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			code = ExitStatus(ws)
		}
	}
	disown(p.pid)
	p.setExited(code)
}

// setExited records the exit code and wakes every waiter.
func (p *Process) setExited(code int32) {
	p.exitCode = code
	p.mu.Lock()
	close(p.done)
	// Reads in flight now wait ExitDrain for more output at most: a child
	// the process left behind may hold the streams open for ever.
	if !p.closed {
		dl := time.Now().Add(p.policy.ExitDrain)
		for _, f := range []*os.File{p.stdout, p.stderr} {
			if f != nil {
				_ = f.SetReadDeadline(dl)
			}
		}
	}
	p.mu.Unlock()
}

// WriteStdin writes data to the process's stdin.
func (p *Process) WriteStdin(data []byte) (int, error) {
	p.mu.Lock()
	f, closed := p.stdin, p.stdinClosed || p.closed
	p.mu.Unlock()
	if closed || f == nil {
		return 0, fmt.Errorf("process %q: %w", p.ID, ErrStdinClosed)
	}
	n, err := f.Write(data)
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return n, fmt.Errorf("process %q: %w", p.ID, ErrStdinClosed)
		}
		if errors.Is(err, syscall.EPIPE) {
			return n, fmt.Errorf("process %q: stdin reader is gone: %w", p.ID, errdefs.ErrFailedPrecondition)
		}
		return n, fmt.Errorf("process %q: write stdin: %w", p.ID, err)
	}
	return n, nil
}

// CloseStdin closes the process's stdin; with a terminal it sends the EOF
// character instead, as closing the master would hang up the terminal.
func (p *Process) CloseStdin() error {
	p.mu.Lock()
	if p.stdinClosed || p.closed || p.stdin == nil {
		p.mu.Unlock()
		return nil
	}
	p.stdinClosed = true
	f, tty := p.stdin, p.tty
	p.mu.Unlock()
	// Not under the lock: a full terminal input queue blocks the write.
	if tty {
		if _, err := f.Write([]byte{4}); err != nil {
			return fmt.Errorf("process %q: send EOF to terminal: %w", p.ID, err)
		}
		return nil
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("process %q: close stdin: %w", p.ID, err)
	}
	return nil
}

// ReadLen is the length a read of n bytes asks for: n within
// (0, MaxReadLen], zero meaning the default.
func ReadLen(n int) int {
	if n <= 0 {
		return defaultReadLen
	}
	return min(n, MaxReadLen)
}

// ReadForReply reads output into buf (at most MaxReadLen bytes of it):
// stdout, or stderr when stderr is set. It returns io.EOF once the stream
// is drained and closed, and with a terminal at once for stderr. Bytes
// read for a call whose ctx ended meanwhile are kept for the next read,
// and the call returns ctx's error. Without wait it reads only output
// already there: where it would wait (for output, or for another read of
// the stream), it reads nothing and returns ErrNoOutputYet.
//
// The reply is the caller's to send: the stream stays the caller's until
// it calls settle (never nil), once, saying whether the reply went out.
// The output of a reply that could not be sent is what the next read
// returns first, so a connection that fails under a reply loses nothing
// of the stream.
func (p *Process) ReadForReply(ctx context.Context, buf []byte, stderr, wait bool) (n int, settle func(sent bool), err error) {
	if len(buf) > MaxReadLen {
		buf = buf[:MaxReadLen]
	}
	f, o := p.stdout, &p.out
	if stderr {
		if p.tty {
			return 0, settled, io.EOF
		}
		f, o = p.stderr, &p.errs
	}
	if len(buf) == 0 {
		return 0, settled, nil
	}
	if wait {
		o.reading.Lock()
	} else if !o.reading.TryLock() {
		return 0, settled, ErrNoOutputYet
	}
	// Unlocked here unless the caller settles, also if read panics.
	unlock := true
	defer func() {
		if unlock {
			o.reading.Unlock()
		}
	}()
	n, err = p.read(ctx, f, buf, o, wait)
	if n == 0 {
		return 0, settled, err
	}
	unlock = false
	return n, func(sent bool) {
		switch {
		case !sent:
			p.mu.Lock()
			o.held = append(append(make([]byte, 0, n+len(o.held)), buf[:n]...), o.held...)
			o.releaseAheadLocked() // held is a new slice now
			p.mu.Unlock()
		case n == len(buf):
			p.readAhead(f, o)
		}
		o.reading.Unlock()
	}, err
}

// aheadMax bounds what one stream reads ahead, beyond the pipe's own
// capacity; the shim asks for 32 KiB per call.
const aheadMax = 64 << 10

var aheadBuffers = sync.Pool{New: func() any {
	b := make([]byte, aheadMax)
	return &b
}}

// readAhead reads output already there into o.held (aheadMax bytes at
// most), without waiting; the caller holds o.reading and has just sent a
// reply that filled its buffer, so the stream is busy and its reader is
// about to ask again. It runs while the reply travels to the host and
// the reader turns round: under TCG that takes the pipe read (and the
// writer's wake-up to refill the pipe) off the next calls' path, which
// then only copy held; reading more than one reply's worth at once
// halves the reads and the writer's wake-ups for the shim's 32 KiB
// calls. Errors and the end of the stream are left for the next read
// of the pipe to meet.
func (p *Process) readAhead(f *os.File, o *output) {
	p.mu.Lock()
	skip := len(o.held) > 0 || f == nil || o.eof || p.closed
	p.mu.Unlock()
	if skip {
		return
	}
	b := aheadBuffers.Get().(*[]byte)
	got, _, _ := tryRead(f, *b)
	if got == 0 {
		aheadBuffers.Put(b)
		return
	}
	p.mu.Lock()
	o.held, o.ahead = (*b)[:got], b
	p.lastData = p.policy.Clock.Now()
	p.mu.Unlock()
}

// settled is the settle of a read that read nothing.
func settled(bool) {}

// read reads f, or what o holds, into buf; the caller holds o.reading.
func (p *Process) read(ctx context.Context, f *os.File, buf []byte, o *output, wait bool) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err // nowhere to send what it would read
	}
	p.mu.Lock()
	if len(o.held) > 0 {
		n := copy(buf, o.held)
		o.held = o.held[n:]
		if len(o.held) == 0 {
			o.held = nil
			o.releaseAheadLocked()
		}
		p.mu.Unlock()
		return n, nil
	}
	// A closed stream was released after the wait: nothing more comes.
	if f == nil || o.eof || p.closed {
		p.mu.Unlock()
		return 0, io.EOF
	}
	p.mu.Unlock()
	// Output already buffered is read at once, without arming the
	// deadline and cancellation a wait needs: a reader keeping up with a
	// busy stream finds data on most calls.
	got, ready, err := tryRead(f, buf)
	if !ready && !wait {
		return 0, ErrNoOutputYet
	}
	if !ready {
		// Set under the lock that waitLoop sets the exit deadline under,
		// so neither overwrites the other's.
		p.mu.Lock()
		var deadline time.Time
		if p.Exited() {
			deadline = time.Now().Add(p.policy.ExitDrain)
		}
		_ = f.SetReadDeadline(deadline)
		p.mu.Unlock()
		// A cancelled call (connection gone) must not leave a reader behind.
		stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
		got, err = drainRead(f, buf)
		stop()
	}
	if got > 0 {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.lastData = p.policy.Clock.Now()
		if ctx.Err() != nil {
			// The reply would go to a connection that is gone: keep
			// the bytes for the next read.
			o.held = append(o.held, buf[:got]...)
			return 0, ctx.Err()
		}
		return got, nil
	}
	switch {
	case err == nil:
		return 0, nil
	// EIO: every slave fd of the pty is closed. A deadline that is not the
	// caller's: the process exited and no data came within the exit drain.
	case errors.Is(err, io.EOF), p.tty && errors.Is(err, syscall.EIO),
		errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil && p.Exited():
		p.mu.Lock()
		o.eof = true
		p.mu.Unlock()
		return 0, io.EOF
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		return 0, ctx.Err()
	case errors.Is(err, os.ErrClosed):
		return 0, io.EOF // released while the read waited
	}
	return 0, fmt.Errorf("process %q: read output: %w", p.ID, err)
}

// drainRead blocks until f has data, EOF or an error (deadlines apply),
// then reads without blocking until buf is full or the stream is empty,
// so one reply carries everything already buffered (a pipe read stops at
// the end of what one write left; a pty returns a line at a time). It
// returns io.EOF only when nothing was read.
func drainRead(f *os.File, buf []byte) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	got := 0
	var rerr error
	err = rc.Read(func(fd uintptr) bool { return readSome(int(fd), buf, &got, &rerr) })
	if got > 0 {
		return got, nil
	}
	if rerr != nil {
		return 0, rerr
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		// The poller's "use of closed file": closeIO ran meanwhile.
		return 0, fmt.Errorf("%w: %v", os.ErrClosed, err)
	}
	return 0, err
}

// tryRead is drainRead without the wait: ready is false when f has
// nothing to read yet. It ignores f's deadline, which only bounds a wait.
func tryRead(f *os.File, buf []byte) (got int, ready bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, true, err
	}
	var rerr error
	if err := rc.Control(func(fd uintptr) { ready = readSome(int(fd), buf, &got, &rerr) }); err != nil {
		// The file was closed meanwhile (closeIO).
		return 0, true, fmt.Errorf("%w: %v", os.ErrClosed, err)
	}
	if got > 0 {
		return got, true, nil
	}
	return 0, ready, rerr
}

// readSome reads the non-blocking fd into buf[*got:] until buf is full,
// the stream is empty or it ends, or an error, recorded in *rerr when
// nothing was read. It reports false when nothing could be read yet: the
// caller waits for fd to become readable.
func readSome(fd int, buf []byte, got *int, rerr *error) bool {
	for *got < len(buf) {
		m, err := unix.Read(fd, buf[*got:])
		switch {
		case m > 0:
			*got += m
			continue
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return *got > 0
		case err != nil:
			if *got == 0 {
				*rerr = err
			}
		case *got == 0: // m == 0, no error: end of stream
			*rerr = io.EOF
		}
		return true
	}
	return true
}

// Resize sets the terminal window size.
func (p *Process) Resize(rows, cols uint32) error {
	if !p.tty {
		return fmt.Errorf("process %q has no terminal: %w", p.ID, errdefs.ErrFailedPrecondition)
	}
	if rows > 0xffff || cols > 0xffff {
		return fmt.Errorf("window size %dx%d out of range: %w", rows, cols, errdefs.ErrInvalidArgument)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("process %q: terminal closed: %w", p.ID, errdefs.ErrNotFound)
	}
	rc, err := p.stdout.SyscallConn()
	if err != nil {
		return fmt.Errorf("process %q: terminal: %w", p.ID, err)
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
	}); err != nil {
		return fmt.Errorf("process %q: terminal: %w", p.ID, err)
	}
	if ioErr != nil {
		return fmt.Errorf("process %q: set window size: %w", p.ID, ioErr)
	}
	return nil
}

// Signal sends sig to the process. Signalling a process that has already
// exited succeeds and does nothing: the runtime's stop sequence (SIGKILL,
// wait, remove) must work on a container that ended by itself.
func (p *Process) Signal(sig unix.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.lp.Signal(sig); err != nil {
		if p.Exited() || errors.Is(err, os.ErrProcessDone) || errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("signal process %q: %w", p.ID, err)
	}
	return nil
}

// closeIO closes the host-side stdio ends, unblocking pending reads.
func (p *Process) closeIO() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if p.releaseTimer != nil {
		p.releaseTimer.Stop()
		p.releaseTimer = nil
	}
	for _, f := range []*os.File{p.stdin, p.stdout, p.stderr} {
		if f != nil {
			_ = f.Close() // the pty master appears twice; the second close is a no-op error
		}
	}
}

// stdioPair holds the container-side ends to close after the start.
type stdioPair struct {
	child []*os.File
}

func (s *stdioPair) closeChild() {
	for _, f := range s.child {
		_ = f.Close()
	}
	s.child = nil
}

// setupPipes creates the stdio pipes for a process without a terminal.
func setupPipes(p *Process, lp *libcontainer.Process, st Streams) (*stdioPair, error) {
	sp := &stdioPair{}
	fail := func(err error) (*stdioPair, error) {
		sp.closeChild()
		for _, f := range []*os.File{p.stdin, p.stdout, p.stderr} {
			if f != nil {
				_ = f.Close()
			}
		}
		return nil, fmt.Errorf("create stdio pipes: %w", err)
	}
	// A stream socket is the process's fd itself; the agent keeps no end
	// of it, so ReadStdout/WriteStdin on that stream see EOF/closed.
	if st.Stdin != nil {
		lp.Stdin = st.Stdin
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		lp.Stdin, p.stdin = r, w
		sp.child = append(sp.child, r)
	}
	if st.Stdout != nil {
		lp.Stdout = st.Stdout
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		lp.Stdout, p.stdout = w, r
		sp.child = append(sp.child, w)
	}
	if st.Stderr != nil {
		lp.Stderr = st.Stderr
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		lp.Stderr, p.stderr = w, r
		sp.child = append(sp.child, w)
	}
	return sp, nil
}

// consoleSocket is the agent's end of the socket libcontainer's init sends
// the pty master over.
type consoleSocket struct {
	parent, child *os.File
}

func newConsoleSocket() (*consoleSocket, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create console socket: %w", err)
	}
	return &consoleSocket{
		parent: os.NewFile(uintptr(fds[0]), "console-parent"),
		child:  os.NewFile(uintptr(fds[1]), "console-child"),
	}, nil
}

func (c *consoleSocket) close() {
	_ = c.parent.Close()
	_ = c.child.Close()
}

// receiveMaster reads the pty master fd and makes it pollable so reads
// park a goroutine, not a thread, and Close unblocks them.
func (c *consoleSocket) receiveMaster() (*os.File, error) {
	_ = c.child.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	rc, err := c.parent.SyscallConn()
	if err != nil {
		return nil, err
	}
	var n, oobn int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	}); err != nil {
		return nil, fmt.Errorf("receive terminal: %w", err)
	}
	if rerr != nil {
		return nil, fmt.Errorf("receive terminal: %w", rerr)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive terminal: malformed control message (%d bytes)", oobn)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return nil, fmt.Errorf("receive terminal: expected one descriptor")
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		_ = unix.Close(fds[0])
		return nil, fmt.Errorf("terminal non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}

// awaitExit parks the calling goroutine in the network poller until pid
// has exited, using a pidfd (readable once the process is a zombie).
// libcontainer's Wait would otherwise block an OS thread in waitid for
// each live process, and Go keeps such threads for ever. Without pidfd
// support it returns at once and Wait blocks as before.
func awaitExit(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		// Done when it exited (or cannot be waited for at all); otherwise
		// the poller waits for the pidfd to become readable.
		return err != nil || reaper.SiginfoPid(&info) != 0
	})
}
