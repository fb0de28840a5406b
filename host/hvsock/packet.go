package hvsock

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire constants of the virtio vsock device (virtio spec, "Socket Device").
const (
	hdrLen = 44 // sizeof(struct virtio_vsock_hdr), packed, little endian

	typeStream    = 1
	typeSeqpacket = 2

	opInvalid       = 0
	opRequest       = 1
	opResponse      = 2
	opRst           = 3
	opShutdown      = 4
	opRW            = 5
	opCreditUpdate  = 6
	opCreditRequest = 7

	shutdownRcv  = 1 // the sender will receive no more data
	shutdownSend = 2 // the sender will send no more data

	// HostCID is the context id of the host side of the device.
	HostCID = 2

	// maxPayload bounds one packet's payload in both directions. Linux guests
	// send at most 64 KiB per packet.
	maxPayload = 64 * 1024
)

// ErrShortHeader reports a packet smaller than the vsock header.
var ErrShortHeader = errors.New("vsock packet shorter than its 44-byte header")

// header is struct virtio_vsock_hdr.
type header struct {
	SrcCID   uint64
	DstCID   uint64
	SrcPort  uint32
	DstPort  uint32
	Len      uint32
	Type     uint16
	Op       uint16
	Flags    uint32
	BufAlloc uint32
	FwdCnt   uint32
}

// parseHeader decodes the header at the start of b.
func parseHeader(b []byte) (header, error) {
	if len(b) < hdrLen {
		return header{}, fmt.Errorf("%w: got %d bytes", ErrShortHeader, len(b))
	}
	le := binary.LittleEndian
	return header{
		SrcCID:   le.Uint64(b[0:]),
		DstCID:   le.Uint64(b[8:]),
		SrcPort:  le.Uint32(b[16:]),
		DstPort:  le.Uint32(b[20:]),
		Len:      le.Uint32(b[24:]),
		Type:     le.Uint16(b[28:]),
		Op:       le.Uint16(b[30:]),
		Flags:    le.Uint32(b[32:]),
		BufAlloc: le.Uint32(b[36:]),
		FwdCnt:   le.Uint32(b[40:]),
	}, nil
}

// put encodes h into the first hdrLen bytes of b.
func (h *header) put(b []byte) {
	_ = b[hdrLen-1]
	le := binary.LittleEndian
	le.PutUint64(b[0:], h.SrcCID)
	le.PutUint64(b[8:], h.DstCID)
	le.PutUint32(b[16:], h.SrcPort)
	le.PutUint32(b[20:], h.DstPort)
	le.PutUint32(b[24:], h.Len)
	le.PutUint16(b[28:], h.Type)
	le.PutUint16(b[30:], h.Op)
	le.PutUint32(b[32:], h.Flags)
	le.PutUint32(b[36:], h.BufAlloc)
	le.PutUint32(b[40:], h.FwdCnt)
}

func opName(op uint16) string {
	switch op {
	case opRequest:
		return "REQUEST"
	case opResponse:
		return "RESPONSE"
	case opRst:
		return "RST"
	case opShutdown:
		return "SHUTDOWN"
	case opRW:
		return "RW"
	case opCreditUpdate:
		return "CREDIT_UPDATE"
	case opCreditRequest:
		return "CREDIT_REQUEST"
	}
	return fmt.Sprintf("op(%d)", op)
}
