package hvsock

import (
	"fmt"
	"net"
	"sync"
)

type connState int

const (
	stateConnecting  connState = iota // host-initiated: REQUEST queued or sent, awaiting RESPONSE
	stateDialing                      // guest-initiated: dialing the host listener
	stateEstablished                  // data flows
	stateClosed                       // removed from the mux
)

func (s connState) String() string {
	return [...]string{"connecting", "dialing", "established", "closed"}[s]
}

// connKey names a stream: the host port (on HostCID) and the guest port.
type connKey struct {
	local, peer uint32
}

func (k connKey) String() string { return fmt.Sprintf("%d:%d<->guest:%d", HostCID, k.local, k.peer) }

// conn is one vsock stream spliced to one host Unix connection. Every field is
// guarded by the mux's mutex; cond (on that mutex) wakes the conn's host
// reader and writer goroutines.
type conn struct {
	key           connKey
	state         connState
	hostInitiated bool
	host          net.Conn
	cond          *sync.Cond
	inReady       bool // queued in mux.ready

	// Packets owed to the guest.
	needRequest      bool
	needResponse     bool
	needCreditUpdate bool

	// host -> guest
	toGuest         byteQueue
	hostEOF         bool   // host reader saw end of stream
	shutdownSent    bool   // SHUTDOWN(send) went to the guest
	txCnt           uint32 // payload bytes sent to the guest
	peerBufAlloc    uint32
	peerFwdCnt      uint32
	creditRequested bool // one CREDIT_REQUEST per stall
	peerShutRcv     bool // guest will not receive any more

	// guest -> host
	toHost       byteQueue
	spare        []byte
	fwdCnt       uint32 // payload bytes written to the host connection
	lastFwdSent  uint32 // fwdCnt as last told to the guest
	peerShutSend bool   // guest will not send any more
	writeClosed  bool   // host connection's write side shut after draining
}

// credit is how many payload bytes the guest can still take.
func (c *conn) credit() uint32 {
	inFlight := c.txCnt - c.peerFwdCnt
	if inFlight > c.peerBufAlloc {
		return 0
	}
	return c.peerBufAlloc - inFlight
}

// wantsData reports whether host data is waiting for the guest.
func (c *conn) wantsData() bool {
	return c.state == stateEstablished && c.toGuest.len() > 0 && !c.peerShutRcv
}

// shutdownDue reports whether the host side has finished sending.
func (c *conn) shutdownDue() bool {
	return c.state == stateEstablished && c.hostEOF && c.toGuest.len() == 0 && !c.shutdownSent && !c.peerShutRcv
}

// hasWork reports whether the conn has a packet to put on the rx queue.
func (c *conn) hasWork() bool {
	switch c.state {
	case stateConnecting:
		return c.needRequest
	case stateEstablished:
		if c.needResponse || c.needCreditUpdate || c.shutdownDue() {
			return true
		}
		return c.wantsData() && (c.credit() > 0 || !c.creditRequested)
	}
	return false
}

// emit writes the conn's next packet into dst (at least hdrLen bytes) and
// returns its length, or 0 when it has nothing to send.
func (c *conn) emit(m *mux, dst []byte) int {
	h := header{
		SrcCID: HostCID, DstCID: m.guestCID, SrcPort: c.key.local, DstPort: c.key.peer,
		Type: typeStream, BufAlloc: m.bufAlloc, FwdCnt: c.fwdCnt,
	}
	n := hdrLen
	switch {
	case c.state == stateConnecting && c.needRequest:
		h.Op, c.needRequest = opRequest, false
	case c.state != stateEstablished:
		return 0
	case c.needResponse:
		h.Op, c.needResponse = opResponse, false
	case c.wantsData() && c.credit() > 0 && len(dst) > hdrLen:
		room := min(len(dst)-hdrLen, maxPayload, int(c.credit()))
		k := c.toGuest.read(dst[hdrLen : hdrLen+room])
		h.Op, h.Len = opRW, uint32(k)
		c.txCnt += uint32(k)
		n += k
		c.cond.Broadcast() // the host reader may wait for room
	case c.wantsData() && c.credit() == 0 && !c.creditRequested:
		h.Op, c.creditRequested = opCreditRequest, true
	case c.shutdownDue():
		h.Op, h.Flags, c.shutdownSent = opShutdown, shutdownSend, true
		defer m.maybeFinish(c)
	case c.needCreditUpdate:
		h.Op = opCreditUpdate
	default:
		return 0
	}
	// Every packet carries our credit, so it answers any pending update.
	c.needCreditUpdate = false
	c.lastFwdSent = c.fwdCnt
	h.put(dst)
	return n
}
