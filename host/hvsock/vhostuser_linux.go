package hvsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// errNoReply marks handler errors for requests whose reply the front-end
// waits for: the connection cannot continue without one.
var errNoReply = errors.New("request needs a reply the backend cannot give")

// vhostConn reads and writes vhost-user messages on the front-end connection.
type vhostConn struct {
	c   *net.UnixConn
	oob []byte
}

func newVhostConn(c *net.UnixConn) *vhostConn {
	return &vhostConn{c: c, oob: make([]byte, unix.CmsgSpace(4*maxFDsPerMsg))}
}

// readFull fills p, collecting any file descriptors that come along.
func (v *vhostConn) readFull(p []byte, fds *[]int) error {
	got := 0
	for got < len(p) {
		n, oobn, flags, _, err := v.c.ReadMsgUnix(p[got:], v.oob)
		if oobn > 0 {
			if perr := parseRights(v.oob[:oobn], fds); perr != nil && err == nil {
				err = perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 && err == nil {
			err = errors.New("file descriptors truncated")
		}
		got += n
		if err != nil {
			if errors.Is(err, io.EOF) && got > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if n == 0 {
			if got == 0 {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

func parseRights(oob []byte, fds *[]int) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("parse control message: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		r, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fmt.Errorf("parse SCM_RIGHTS: %w", err)
		}
		*fds = append(*fds, r...)
	}
	return nil
}

// read returns the next message. On error, any fds received are closed.
func (v *vhostConn) read() (msgHeader, []byte, []int, error) {
	var fds []int
	var hb [msgHeaderLen]byte
	if err := v.readFull(hb[:], &fds); err != nil {
		closeFDs(fds)
		return msgHeader{}, nil, nil, err
	}
	h, err := parseMsgHeader(hb[:])
	if err != nil {
		closeFDs(fds)
		return h, nil, nil, err
	}
	payload := make([]byte, h.Size)
	if err := v.readFull(payload, &fds); err != nil {
		closeFDs(fds)
		return h, nil, nil, fmt.Errorf("read %s payload: %w", reqName(h.Request), err)
	}
	return h, payload, fds, nil
}

func (v *vhostConn) reply(req uint32, payload []byte) error {
	b := make([]byte, msgHeaderLen+len(payload))
	msgHeader{Request: req, Flags: flagVersion | flagReply, Size: uint32(len(payload))}.put(b)
	copy(b[msgHeaderLen:], payload)
	if _, err := v.c.Write(b); err != nil {
		return fmt.Errorf("reply to %s: %w", reqName(req), err)
	}
	return nil
}

func u64Bytes(v uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	return b
}

// serveVhost runs the message loop until the front-end disconnects. A clean
// disconnect returns nil.
func (d *device) serveVhost(c *net.UnixConn, guestCID uint64) error {
	v := newVhostConn(c)
	for {
		h, payload, fds, err := v.read()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ECONNRESET) {
				return nil
			}
			return fmt.Errorf("vhost-user: %w", err)
		}
		reply, herr := d.handle(h, payload, fds, guestCID)
		switch {
		case errors.Is(herr, errNoReply):
			return fmt.Errorf("vhost-user %s: %w", reqName(h.Request), herr)
		case reply != nil:
			if err := v.reply(h.Request, reply); err != nil {
				return err
			}
		case h.Flags&flagNeedReply != 0:
			status := uint64(0)
			if herr != nil {
				status = 1
			}
			if err := v.reply(h.Request, u64Bytes(status)); err != nil {
				return err
			}
		}
		if herr != nil {
			d.log.Warn("vhost-user request failed", "request", reqName(h.Request), "err", herr)
		} else {
			d.log.Debug("vhost-user request", "request", reqName(h.Request), "size", h.Size, "fds", len(fds))
		}
	}
}

// eventFile wraps an eventfd so that Go's poller owns it. The fd must be
// non-blocking for reads to be interruptible; the front-end normally passes
// it so already.
func eventFile(fd int, name string) (*os.File, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("%s eventfd: set non-blocking: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// takeFDs checks that a message carries want fds, closing them all otherwise.
func takeFDs(req uint32, fds []int, want int) error {
	if len(fds) != want {
		closeFDs(fds)
		return fmt.Errorf("%w: %s carries %d file descriptors, want %d", ErrMalformed, reqName(req), len(fds), want)
	}
	return nil
}

// handle applies one request. A non-nil reply is sent back; fds are consumed.
func (d *device) handle(h msgHeader, p []byte, fds []int, guestCID uint64) (reply []byte, err error) {
	req := h.Request
	switch req {
	case reqSetMemTable, reqSetVringKick, reqSetVringCall, reqSetVringErr:
	default:
		if err := takeFDs(req, fds, 0); err != nil {
			return d.noReply(req, err)
		}
	}
	switch req {
	case reqGetFeatures:
		return u64Bytes(offeredFeatures), nil
	case reqGetProtocolFeatures:
		return u64Bytes(offeredProtoFeatures), nil
	case reqGetQueueNum:
		return u64Bytes(numQueues), nil
	case reqSetFeatures:
		return nil, acceptOffered(req, p, "features", offeredFeatures, &d.features)
	case reqSetProtocolFeatures:
		return nil, acceptOffered(req, p, "protocol features", offeredProtoFeatures, &d.protoFeatures)
	case reqSetOwner:
		return nil, nil
	case reqResetOwner:
		d.reset()
		return nil, nil
	case reqSetMemTable:
		return nil, d.setMemTable(p, fds)
	case reqSetVringNum, reqSetVringBase, reqSetVringEnable:
		return nil, d.setVringState(req, p)
	case reqSetVringAddr:
		return nil, d.setVringAddr(p)
	case reqGetVringBase:
		return d.getVringBase(req, p)
	case reqSetVringKick, reqSetVringCall, reqSetVringErr:
		return nil, d.setVringFD(req, p, fds)
	case reqGetConfig:
		c, err := decodeConfig(p)
		if err != nil {
			return d.noReply(req, err)
		}
		return configBytes(c, guestCID), nil
	case reqSetConfig:
		return nil, errors.New("the vsock config space is read-only")
	}
	closeFDs(fds)
	return nil, fmt.Errorf("unsupported request %s", reqName(req))
}

// acceptOffered stores the feature bits the front-end acknowledges in
// *dst, refusing any bit that was not offered.
func acceptOffered(req uint32, p []byte, what string, offered uint64, dst *uint64) error {
	v, err := decodeU64(req, p)
	if err != nil {
		return err
	}
	if extra := v &^ offered; extra != 0 {
		return fmt.Errorf("%s %#x were not offered", what, extra)
	}
	*dst = v
	return nil
}

// setMemTable maps the guest's memory regions (one fd each) in place of
// the old table.
func (d *device) setMemTable(p []byte, fds []int) error {
	descs, err := decodeMemTable(p)
	if err != nil {
		closeFDs(fds)
		return err
	}
	mem, err := mapRegions(descs, fds)
	if err != nil {
		return err
	}
	d.pause()
	old := d.mem
	d.mem = mem
	if err := old.close(); err != nil {
		d.log.Warn("vsock: unmap old guest memory", "err", err)
	}
	d.reconcile()
	return nil
}

// setVringState applies SET_VRING_NUM, SET_VRING_BASE or
// SET_VRING_ENABLE, with the processors paused.
func (d *device) setVringState(req uint32, p []byte) error {
	s, err := decodeVringState(req, p)
	if err != nil {
		return err
	}
	switch req {
	case reqSetVringNum:
		if s.Num == 0 || s.Num > maxQueueSize || s.Num&(s.Num-1) != 0 {
			return fmt.Errorf("vring %d: size %d is not a power of two in 1..%d", s.Index, s.Num, maxQueueSize)
		}
	case reqSetVringBase:
		if s.Num > 0xffff {
			return fmt.Errorf("vring %d: base %d exceeds 16 bits", s.Index, s.Num)
		}
	case reqSetVringEnable:
		if s.Num > 1 {
			return fmt.Errorf("vring %d: enable value %d", s.Index, s.Num)
		}
	}
	d.pause()
	switch req {
	case reqSetVringNum:
		d.vq[s.Index].num = uint16(s.Num)
		d.ringDown[s.Index] = false
	case reqSetVringBase:
		d.vq[s.Index].lastAvail = uint16(s.Num)
		d.ringDown[s.Index] = false
	case reqSetVringEnable:
		d.enabled[s.Index] = s.Num == 1
	}
	d.reconcile()
	return nil
}

func (d *device) setVringAddr(p []byte) error {
	a, err := decodeVringAddr(p)
	if err != nil {
		return err
	}
	d.pause()
	q := &d.vq[a.Index]
	q.descAddr, q.usedAddr, q.availAddr, q.addrSet = a.Desc, a.Used, a.Avail, true
	d.ringDown[a.Index] = false
	d.reconcile()
	return nil
}

// getVringBase stops a ring and answers where it stopped.
func (d *device) getVringBase(req uint32, p []byte) ([]byte, error) {
	s, err := decodeVringState(req, p)
	if err != nil {
		return d.noReply(req, err)
	}
	// The ring stops here; the guest side of every stream is gone.
	d.pause()
	d.setKick(int(s.Index), nil)
	d.mux.resetAll()
	out := make([]byte, 8)
	binary.LittleEndian.PutUint32(out, s.Index)
	binary.LittleEndian.PutUint32(out[4:], uint32(d.vq[s.Index].lastAvail))
	return out, nil
}

// setVringFD installs a ring's kick, call or error eventfd (or none, when
// the message says so).
func (d *device) setVringFD(req uint32, p []byte, fds []int) error {
	q, noFD, err := decodeVringFD(req, p)
	want := 1
	if noFD {
		want = 0
	}
	if err == nil {
		err = takeFDs(req, fds, want)
	} else {
		closeFDs(fds)
	}
	if err != nil {
		return err
	}
	var f *os.File
	if !noFD {
		if f, err = eventFile(fds[0], reqName(req)); err != nil {
			return err
		}
	}
	switch req {
	case reqSetVringKick:
		if noFD {
			return fmt.Errorf("vring %d: polling without a kick eventfd is not supported", q)
		}
		d.pause()
		d.setKick(q, f)
		if d.features&featProtocolFeatures == 0 {
			d.enabled[q] = true // without protocol features a kick also enables
		}
		d.ringDown[q] = false
		d.reconcile()
	case reqSetVringCall:
		d.setCall(q, f)
	case reqSetVringErr:
		d.setErr(q, f)
	}
	return nil
}

// noReply turns an error on a request that requires a reply into a fatal one.
func (d *device) noReply(req uint32, err error) ([]byte, error) {
	switch req {
	case reqGetFeatures, reqGetProtocolFeatures, reqGetQueueNum, reqGetVringBase, reqGetConfig:
		return nil, fmt.Errorf("%w: %w", errNoReply, err)
	}
	return nil, err
}

// reset returns the device to its initial state (RESET_OWNER).
func (d *device) reset() {
	d.shutdown()
	d.mux.resetAll()
	for q := range d.vq {
		d.vq[q] = virtqueue{index: q}
		d.enabled[q] = false
		d.ringDown[q] = false
	}
	d.features, d.protoFeatures = 0, 0
}
