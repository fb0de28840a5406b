package hvsock

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// vhost-user request codes (QEMU docs/interop/vhost-user.rst).
const (
	reqGetFeatures         = 1
	reqSetFeatures         = 2
	reqSetOwner            = 3
	reqResetOwner          = 4
	reqSetMemTable         = 5
	reqSetLogBase          = 6
	reqSetLogFD            = 7
	reqSetVringNum         = 8
	reqSetVringAddr        = 9
	reqSetVringBase        = 10
	reqGetVringBase        = 11
	reqSetVringKick        = 12
	reqSetVringCall        = 13
	reqSetVringErr         = 14
	reqGetProtocolFeatures = 15
	reqSetProtocolFeatures = 16
	reqGetQueueNum         = 17
	reqSetVringEnable      = 18
	reqGetConfig           = 24
	reqSetConfig           = 25
)

// Header flags.
const (
	flagVersion     = 0x1
	flagReply       = 0x4
	flagNeedReply   = 0x8
	flagVersionMask = 0x3
)

// Feature bits.
const (
	featVersion1         = 1 << 32 // VIRTIO_F_VERSION_1
	featProtocolFeatures = 1 << 30 // VHOST_USER_F_PROTOCOL_FEATURES

	protoMQ       = 1 << 0
	protoReplyAck = 1 << 3
	protoConfig   = 1 << 9 // mandatory for vhost-user-vsock in QEMU

	offeredFeatures      = featVersion1 | featProtocolFeatures
	offeredProtoFeatures = protoReplyAck | protoConfig
)

const (
	msgHeaderLen  = 12
	maxMsgPayload = 4096 // far above the largest message this device uses
	maxMemRegions = 8    // VHOST_MEMORY_BASELINE_NREGIONS
	maxFDsPerMsg  = maxMemRegions
	vringNoFD     = 0x100 // VHOST_USER_VRING_NOFD_MASK in a u64 index payload
	vringIdxMask  = 0xff
	numQueues     = 2 // rx and tx; the event queue stays in the front-end
	maxQueueSize  = 32768
	configSpace   = 8 // struct virtio_vsock_config { le64 guest_cid; }
	maxConfigSize = 256
)

// ErrMalformed reports a vhost-user message whose payload does not match its
// request type.
var ErrMalformed = errors.New("malformed vhost-user message")

// msgHeader is the fixed part of every vhost-user message.
type msgHeader struct {
	Request, Flags, Size uint32
}

func parseMsgHeader(b []byte) (msgHeader, error) {
	if len(b) < msgHeaderLen {
		return msgHeader{}, fmt.Errorf("%w: header of %d bytes", ErrMalformed, len(b))
	}
	le := binary.LittleEndian
	h := msgHeader{le.Uint32(b[0:]), le.Uint32(b[4:]), le.Uint32(b[8:])}
	if h.Flags&flagVersionMask != flagVersion {
		return h, fmt.Errorf("%w: request %d has version %d, want 1", ErrMalformed, h.Request, h.Flags&flagVersionMask)
	}
	if h.Size > maxMsgPayload {
		return h, fmt.Errorf("%w: request %d payload of %d bytes exceeds %d", ErrMalformed, h.Request, h.Size, maxMsgPayload)
	}
	return h, nil
}

func (h msgHeader) put(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], h.Request)
	le.PutUint32(b[4:], h.Flags)
	le.PutUint32(b[8:], h.Size)
}

func decodeU64(req uint32, p []byte) (uint64, error) {
	if len(p) < 8 {
		return 0, fmt.Errorf("%w: request %d: u64 payload of %d bytes", ErrMalformed, req, len(p))
	}
	return binary.LittleEndian.Uint64(p), nil
}

// vringState is struct vhost_vring_state.
type vringState struct {
	Index, Num uint32
}

func decodeVringState(req uint32, p []byte) (vringState, error) {
	if len(p) < 8 {
		return vringState{}, fmt.Errorf("%w: request %d: vring state of %d bytes", ErrMalformed, req, len(p))
	}
	s := vringState{binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])}
	if s.Index >= numQueues {
		return s, fmt.Errorf("%w: request %d: vring index %d (device has %d)", ErrMalformed, req, s.Index, numQueues)
	}
	return s, nil
}

// vringAddr is struct vhost_vring_addr.
type vringAddr struct {
	Index, Flags               uint32
	Desc, Used, Avail, LogAddr uint64
}

func decodeVringAddr(p []byte) (vringAddr, error) {
	if len(p) < 40 {
		return vringAddr{}, fmt.Errorf("%w: vring address of %d bytes", ErrMalformed, len(p))
	}
	le := binary.LittleEndian
	a := vringAddr{
		Index: le.Uint32(p[0:]), Flags: le.Uint32(p[4:]),
		Desc: le.Uint64(p[8:]), Used: le.Uint64(p[16:]), Avail: le.Uint64(p[24:]), LogAddr: le.Uint64(p[32:]),
	}
	if a.Index >= numQueues {
		return a, fmt.Errorf("%w: vring address for index %d (device has %d)", ErrMalformed, a.Index, numQueues)
	}
	return a, nil
}

// decodeVringFD decodes the u64 of SET_VRING_KICK/CALL/ERR: the queue index
// and whether the message carries no fd.
func decodeVringFD(req uint32, p []byte) (index int, noFD bool, err error) {
	v, err := decodeU64(req, p)
	if err != nil {
		return 0, false, err
	}
	if v&^uint64(vringIdxMask|vringNoFD) != 0 {
		return 0, false, fmt.Errorf("%w: request %d: unknown bits in %#x", ErrMalformed, req, v)
	}
	index = int(v & vringIdxMask)
	if index >= numQueues {
		return 0, false, fmt.Errorf("%w: request %d: vring index %d (device has %d)", ErrMalformed, req, index, numQueues)
	}
	return index, v&vringNoFD != 0, nil
}

func decodeMemTable(p []byte) ([]regionDesc, error) {
	if len(p) < 8 {
		return nil, fmt.Errorf("%w: memory table of %d bytes", ErrMalformed, len(p))
	}
	n := binary.LittleEndian.Uint32(p)
	if n == 0 || n > maxMemRegions {
		return nil, fmt.Errorf("%w: memory table with %d regions (1..%d)", ErrMalformed, n, maxMemRegions)
	}
	if len(p) < 8+int(n)*32 {
		return nil, fmt.Errorf("%w: memory table of %d regions in %d bytes", ErrMalformed, n, len(p))
	}
	le := binary.LittleEndian
	out := make([]regionDesc, n)
	for i := range out {
		b := p[8+32*i:]
		out[i] = regionDesc{GPA: le.Uint64(b), Size: le.Uint64(b[8:]), UVA: le.Uint64(b[16:]), MmapOffset: le.Uint64(b[24:])}
	}
	return out, nil
}

// configReq is the fixed part of GET_CONFIG / SET_CONFIG.
type configReq struct {
	Offset, Size, Flags uint32
}

func decodeConfig(p []byte) (configReq, error) {
	if len(p) < 12 {
		return configReq{}, fmt.Errorf("%w: config request of %d bytes", ErrMalformed, len(p))
	}
	le := binary.LittleEndian
	c := configReq{le.Uint32(p), le.Uint32(p[4:]), le.Uint32(p[8:])}
	if c.Size > maxConfigSize || c.Offset > maxConfigSize || c.Offset+c.Size > maxConfigSize {
		return c, fmt.Errorf("%w: config access at %d+%d beyond %d", ErrMalformed, c.Offset, c.Size, maxConfigSize)
	}
	return c, nil
}

// configBytes returns the reply payload of GET_CONFIG: the request's fixed part
// followed by the bytes of the vsock config space it asks for.
func configBytes(c configReq, guestCID uint64) []byte {
	var space [maxConfigSize]byte
	binary.LittleEndian.PutUint64(space[:], guestCID)
	out := make([]byte, 12+c.Size)
	le := binary.LittleEndian
	le.PutUint32(out, c.Offset)
	le.PutUint32(out[4:], c.Size)
	le.PutUint32(out[8:], c.Flags)
	copy(out[12:], space[c.Offset:c.Offset+c.Size])
	return out
}

func reqName(r uint32) string {
	names := map[uint32]string{
		reqGetFeatures: "GET_FEATURES", reqSetFeatures: "SET_FEATURES", reqSetOwner: "SET_OWNER",
		reqResetOwner: "RESET_OWNER", reqSetMemTable: "SET_MEM_TABLE", reqSetLogBase: "SET_LOG_BASE",
		reqSetLogFD: "SET_LOG_FD", reqSetVringNum: "SET_VRING_NUM", reqSetVringAddr: "SET_VRING_ADDR",
		reqSetVringBase: "SET_VRING_BASE", reqGetVringBase: "GET_VRING_BASE", reqSetVringKick: "SET_VRING_KICK",
		reqSetVringCall: "SET_VRING_CALL", reqSetVringErr: "SET_VRING_ERR",
		reqGetProtocolFeatures: "GET_PROTOCOL_FEATURES", reqSetProtocolFeatures: "SET_PROTOCOL_FEATURES",
		reqGetQueueNum: "GET_QUEUE_NUM", reqSetVringEnable: "SET_VRING_ENABLE",
		reqGetConfig: "GET_CONFIG", reqSetConfig: "SET_CONFIG",
	}
	if n, ok := names[r]; ok {
		return n
	}
	return fmt.Sprintf("request(%d)", r)
}
