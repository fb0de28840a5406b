// Package qmp is a small client for the QEMU Machine Protocol: it negotiates
// capabilities, runs commands with context deadlines, collects asynchronous
// events, and wraps the commands the test kit needs (memory and CPU hot-plug,
// memory device queries, quit).
//
// It exists instead of a general-purpose QMP library because every call here
// must honour a context (a wedged QEMU must not hang a test run) and every
// reply is treated as untrusted input.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// maxLine bounds one QMP message; QEMU's replies for our commands are far smaller.
const maxLine = 4 << 20

// ErrClosed is returned for commands issued on (or interrupted by) a closed connection.
var ErrClosed = errors.New("qmp: connection closed")

// Error is an error reply from QEMU.
type Error struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// Event is an asynchronous QMP event.
type Event struct {
	Name      string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Version is QEMU's version from the greeting.
type Version struct {
	QEMU struct {
		Major int `json:"major"`
		Minor int `json:"minor"`
		Micro int `json:"micro"`
	} `json:"qemu"`
	Package string `json:"package"`
}

// message is any object QEMU sends: greeting, reply or event.
type message struct {
	QMP *struct {
		Version Version `json:"version"`
	} `json:"QMP,omitempty"`
	Return json.RawMessage `json:"return,omitempty"`
	Error  *Error          `json:"error,omitempty"`
	ID     *uint64         `json:"id,omitempty"`
	Event  string          `json:"event,omitempty"`
}

type reply struct {
	ret json.RawMessage
	err *Error
}

// Client is a QMP connection. It is safe for concurrent use.
type Client struct {
	conn    net.Conn
	version Version

	writeMu sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan reply
	closed  bool
	readErr error

	events chan Event
	done   chan struct{}
}

// Dial connects to the QMP Unix socket at path, reads the greeting and
// enters command mode. ctx bounds the whole handshake.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: dial %s: %w", path, err)
	}
	c, err := NewClient(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("qmp: %s: %w", path, err)
	}
	return c, nil
}

// NewClient runs the QMP handshake on an established connection and takes
// ownership of it.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{
		conn:    conn,
		pending: make(map[uint64]chan reply),
		events:  make(chan Event, 64),
		done:    make(chan struct{}),
	}
	rd := bufio.NewReaderSize(conn, 64<<10)

	// The greeting is read synchronously, under the context's deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	line, err := readLine(rd)
	stopped := stop()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read greeting: %w", ctx.Err())
		}
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	if !stopped {
		// The deadline callback ran (or is running): the context is done.
		conn.Close()
		return nil, fmt.Errorf("read greeting: %w", ctx.Err())
	}
	var greet message
	if err := json.Unmarshal(line, &greet); err != nil || greet.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("unexpected greeting %q", truncate(line))
	}
	c.version = greet.QMP.Version

	go c.readLoop(rd)
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Version reports the QEMU version from the greeting.
func (c *Client) Version() Version { return c.version }

// Events delivers asynchronous events. Events are dropped when nobody
// reads and the buffer is full, so a slow reader never blocks replies.
// The channel is closed when the connection ends.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Close closes the connection; pending commands fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	return c.conn.Close()
}

func readLine(rd *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, isPrefix, err := rd.ReadLine()
		if err != nil {
			return nil, err
		}
		buf = append(buf, chunk...)
		if len(buf) > maxLine {
			return nil, fmt.Errorf("message longer than %d bytes", maxLine)
		}
		if !isPrefix {
			if len(buf) == 0 {
				continue
			}
			return buf, nil
		}
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

func (c *Client) readLoop(rd *bufio.Reader) {
	var err error
	for {
		var line []byte
		line, err = readLine(rd)
		if err != nil {
			break
		}
		var m message
		if jerr := json.Unmarshal(line, &m); jerr != nil {
			err = fmt.Errorf("malformed message %q: %w", truncate(line), jerr)
			break
		}
		if m.Event != "" {
			var ev Event
			if jerr := json.Unmarshal(line, &ev); jerr != nil {
				err = fmt.Errorf("malformed event %q: %w", truncate(line), jerr)
				break
			}
			select {
			case c.events <- ev:
			default:
			}
			continue
		}
		if m.ID == nil {
			// Replies always echo our id; anything else is not ours to match.
			continue
		}
		c.mu.Lock()
		ch, ok := c.pending[*m.ID]
		delete(c.pending, *m.ID)
		c.mu.Unlock()
		if ok {
			ch <- reply{ret: m.Return, err: m.Error}
		}
	}
	c.conn.Close()
	c.mu.Lock()
	c.closed = true
	c.readErr = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.events)
	close(c.done)
}

type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// Execute runs command with args (marshalled to JSON; nil for none) and
// decodes the "return" value into result (nil to discard it).
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	ret, err := c.execute(ctx, command, args)
	if err != nil {
		return err
	}
	if result != nil {
		if err := json.Unmarshal(ret, result); err != nil {
			return fmt.Errorf("qmp %s: decode reply %q: %w", command, truncate(ret), err)
		}
	}
	return nil
}

func (c *Client) execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("qmp %s: %w", command, ErrClosed)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}

	b, err := json.Marshal(request{Execute: command, Arguments: args, ID: id})
	if err != nil {
		forget()
		return nil, fmt.Errorf("qmp %s: encode: %w", command, err)
	}
	b = append(b, '\n')

	c.writeMu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	} else {
		c.conn.SetWriteDeadline(time.Time{})
	}
	_, err = c.conn.Write(b)
	c.writeMu.Unlock()
	if err != nil {
		forget()
		return nil, fmt.Errorf("qmp %s: write: %w", command, err)
	}

	select {
	case r, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("qmp %s: %w", command, c.closedErr())
		}
		if r.err != nil {
			e := *r.err
			e.Command = command
			return nil, &e
		}
		return r.ret, nil
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr != nil && !errors.Is(c.readErr, net.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, c.readErr)
	}
	return ErrClosed
}
