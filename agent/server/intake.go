package server

import (
	"encoding/binary"
	"io"
)

// frameIntake reads the host's ttrpc frames off a connection for the ttrpc
// server and takes out the ones the stdio path serves (stdio.go); ttrpc
// reads every other byte unchanged and in order.
//
// It reads ahead into a buffer of its own, so that a small request comes
// in with one system call rather than ttrpc's two (header, then payload).
// Only small request frames are looked into: one whose payload is at most
// maxTakenRequest bytes is buffered whole, offered to take, and handed to
// ttrpc when not taken. Larger frames are handed on as they arrive.
//
// It follows ttrpc's stream id rule (a request's id must be higher than
// every earlier request's), which ttrpc applies only to the requests it
// sees: a request reusing the id of one that was taken would pass ttrpc's
// check, so it is answered here with ttrpc's own refusal.
//
// Read runs in ttrpc's one receive goroutine; nothing else touches it.
type frameIntake struct {
	r io.Reader
	// take serves a request frame's payload itself and reports true, or
	// reports false to leave it to ttrpc. The payload is only valid
	// during the call.
	take func(id uint32, payload []byte) bool
	// refuse answers a request whose stream id was used before.
	refuse func(id uint32)

	buf     []byte // read ahead: buf[rd:wr] not consumed yet
	rd, wr  int
	out     []byte // bytes for ttrpc: the current frame's buffered part
	pass    uint32 // bytes of the current frame not in out yet
	err     error  // the connection's read error, returned once out is empty
	lastID  uint32 // the highest request id seen (taken or handed on)
	ttrpcID uint32 // the highest request id ttrpc has accepted
}

// maxTakenRequest bounds the requests the intake reads whole: a ReadStdout
// request is a few dozen bytes.
const maxTakenRequest = 4 << 10

// intakeBuffer is the read-ahead: a header and the largest request looked
// into fit in it.
const intakeBuffer = 2 * (frameHeaderLen + maxTakenRequest)

func (f *frameIntake) Read(p []byte) (int, error) {
	for {
		if len(f.out) > 0 {
			n := copy(p, f.out)
			f.out = f.out[n:]
			return n, nil
		}
		if f.pass > 0 {
			if f.rd < f.wr { // read ahead already
				n := min(f.wr-f.rd, int(min(f.pass, uint32(len(p)))))
				copy(p, f.buf[f.rd:f.rd+n])
				f.rd += n
				f.pass -= uint32(n)
				return n, nil
			}
			n, err := f.r.Read(p[:min(uint32(len(p)), f.pass)])
			f.pass -= uint32(n)
			return n, err
		}
		if f.err != nil {
			return 0, f.err
		}
		f.next()
	}
}

// fill reads until n bytes are buffered, and reports whether they are.
// On a read error, what is buffered becomes ttrpc's, then the error.
func (f *frameIntake) fill(n int) bool {
	if f.buf == nil {
		f.buf = make([]byte, intakeBuffer)
	}
	if f.rd+n > len(f.buf) {
		f.wr = copy(f.buf, f.buf[f.rd:f.wr])
		f.rd = 0
	}
	for f.wr-f.rd < n {
		m, err := f.r.Read(f.buf[f.wr:])
		f.wr += m
		if err != nil && f.wr-f.rd < n {
			f.out, f.err = f.buf[f.rd:f.wr], err
			if err == io.EOF && f.wr > f.rd {
				f.err = io.ErrUnexpectedEOF
			}
			f.rd = f.wr
			return false
		}
	}
	return true
}

// next takes in the next frame: its header, and its payload when small,
// and decides what becomes of it.
func (f *frameIntake) next() {
	if !f.fill(frameHeaderLen) {
		return
	}
	hdr := f.buf[f.rd : f.rd+frameHeaderLen]
	size := binary.BigEndian.Uint32(hdr[0:4])
	id := binary.BigEndian.Uint32(hdr[4:8])
	typ := hdr[8]
	// ttrpc's view of a request: refused when even or over its size
	// limit, else checked against its last id.
	request := typ == frameRequest && id%2 == 1 && size <= ttrpcMaxMessage
	if !request || size > maxTakenRequest {
		if request {
			f.handedOn(id)
		}
		f.out, f.pass = hdr, size
		f.rd += frameHeaderLen
		return
	}
	n := frameHeaderLen + int(size)
	if !f.fill(n) {
		return
	}
	frame := f.buf[f.rd : f.rd+n]
	f.rd += n
	switch {
	case id <= f.ttrpcID:
		// ttrpc refuses it itself.
	case id <= f.lastID:
		f.refuse(id)
		return
	case f.take(id, frame[frameHeaderLen:]):
		f.lastID = id
		return
	}
	f.handedOn(id)
	f.out = frame
}

// handedOn notes a request going to ttrpc.
func (f *frameIntake) handedOn(id uint32) {
	if id > f.ttrpcID {
		f.ttrpcID = id
	}
	if id > f.lastID {
		f.lastID = id
	}
}
