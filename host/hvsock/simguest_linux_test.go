package hvsock

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The simulated guest plays QEMU (vhost-user front-end) and the guest's
// virtio-vsock driver at once: it owns a memfd as guest RAM, lays out split
// virtqueues in it, and talks to a real Backend over its Unix sockets.

const (
	simMemSize   = 16 << 20
	simR0Size    = 1 << 20 // region 0: rings
	simR1GPA     = 0x40000000
	simR0UVA     = 0x7f0000000000
	simR1UVA     = 0x7f1000000000
	simQueueSize = 128
	simRxBufLen  = 3776 // what a Linux 6.1 guest posts
	simTxBufLen  = maxPayload
	simGuestCID  = 3
)

type simRing struct {
	num                   int
	descGPA, availGPA     uint64
	usedGPA               uint64
	desc, avail, used     []byte
	availIdx, lastUsed    uint16
	kick, call, err       *os.File // guest ends of the eventfds
	callFD, kickFD, errFD int      // fds handed to the backend
	calls                 chan struct{}
}

type simGuest struct {
	t     testing.TB
	mem   []byte
	memfd int
	dir   string
	vhost string
	uds   string
	b     *Backend
	serve chan error
	front *net.UnixConn
	rings [2]*simRing
	bump  uint64 // next free guest physical address in region 1

	rxBufs [simQueueSize]uint64 // gpa of each rx descriptor's buffer
	txMu   sync.Mutex
	txFree []int // free header descriptor indexes (payload is index+1)
	txBufs [simQueueSize]uint64

	pkts    chan simPkt
	stopRx  chan struct{}
	rxDone  chan struct{}
	rxSplit bool // post rx buffers as header + payload descriptors

	cleanOnce sync.Once
	stopped   bool // under txMu: guest memory is about to go away
}

var errGuestStopped = errors.New("simulated guest stopped")

type simPkt struct {
	h       header
	payload []byte
}

// offset translates a guest physical address into an offset in the memfd.
func simOffset(gpa uint64) uint64 {
	if gpa >= simR1GPA {
		return gpa - simR1GPA + simR0Size
	}
	return gpa
}

func simUVA(gpa uint64) uint64 {
	if gpa >= simR1GPA {
		return gpa - simR1GPA + simR1UVA
	}
	return gpa + simR0UVA
}

func (g *simGuest) at(gpa, n uint64) []byte {
	off := simOffset(gpa)
	return g.mem[off : off+n]
}

func (g *simGuest) alloc(n uint64) uint64 {
	a := g.bump
	g.bump += (n + 63) &^ 63
	if simOffset(g.bump) > simMemSize {
		g.t.Fatalf("simulated guest out of memory")
	}
	return a
}

type simOpt func(*simGuest)

func withSplitRx() simOpt { return func(g *simGuest) { g.rxSplit = true } }

// newSimGuest starts a Backend in a temporary directory and returns the
// simulated guest, not yet connected.
func newSimGuest(t testing.TB, bopts []Option, opts ...simOpt) *simGuest {
	t.Helper()
	dir := t.TempDir()
	g := &simGuest{t: t, dir: dir, vhost: filepath.Join(dir, "vhost.sock"), uds: filepath.Join(dir, "vsock.sock"),
		pkts: make(chan simPkt, 4096), stopRx: make(chan struct{}), rxDone: make(chan struct{}), bump: simR1GPA}
	for _, o := range opts {
		o(g)
	}
	fd, err := unix.MemfdCreate("simguest", unix.MFD_CLOEXEC)
	if err != nil {
		t.Skipf("memfd_create: %v", err)
	}
	if err := unix.Ftruncate(fd, simMemSize); err != nil {
		t.Fatal(err)
	}
	g.memfd = fd
	g.mem, err = unix.Mmap(fd, 0, simMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	bopts = append([]Option{WithLogger(testLogger(t))}, bopts...)
	g.b, err = Listen(g.vhost, g.uds, simGuestCID, bopts...)
	if err != nil {
		t.Fatal(err)
	}
	g.serve = make(chan error, 1)
	go func() { g.serve <- g.b.Serve(context.Background()) }()
	t.Cleanup(g.cleanup)
	return g
}

func (g *simGuest) cleanup() { g.cleanOnce.Do(g.doCleanup) }

func (g *simGuest) doCleanup() {
	g.stopGuest()
	if g.front != nil {
		_ = g.front.Close()
	}
	_ = g.b.Close()
	select {
	case <-g.serve:
	case <-time.After(10 * time.Second):
		g.t.Errorf("Serve did not return after Close")
	}
	for _, r := range g.rings {
		if r == nil {
			continue
		}
		for _, fd := range []int{r.callFD, r.kickFD, r.errFD} {
			_ = unix.Close(fd)
		}
	}
	_ = unix.Munmap(g.mem)
	_ = unix.Close(g.memfd)
}

func (g *simGuest) stopGuest() {
	select {
	case <-g.stopRx:
		return
	default:
	}
	close(g.stopRx)
	g.txMu.Lock()
	g.stopped = true
	g.txMu.Unlock()
	for _, r := range g.rings {
		if r != nil {
			_ = r.call.Close()
			_ = r.kick.Close()
			_ = r.err.Close()
		}
	}
	if g.rings[rxQueue] != nil {
		<-g.rxDone
	}
}

// ---- vhost-user front-end ----

func (g *simGuest) send(req uint32, flags uint32, payload []byte, fds ...int) {
	g.t.Helper()
	b := make([]byte, msgHeaderLen+len(payload))
	msgHeader{Request: req, Flags: flagVersion | flags, Size: uint32(len(payload))}.put(b)
	copy(b[msgHeaderLen:], payload)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := g.front.WriteMsgUnix(b, oob, nil); err != nil {
		g.t.Fatalf("send %s: %v", reqName(req), err)
	}
}

func (g *simGuest) recvReply(req uint32) []byte {
	g.t.Helper()
	_ = g.front.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hb [msgHeaderLen]byte
	if _, err := readFullConn(g.front, hb[:]); err != nil {
		g.t.Fatalf("reply to %s: %v", reqName(req), err)
	}
	h := msgHeader{binary.LittleEndian.Uint32(hb[:]), binary.LittleEndian.Uint32(hb[4:]), binary.LittleEndian.Uint32(hb[8:])}
	if h.Request != req || h.Flags != 0x5 {
		g.t.Fatalf("reply to %s: header %+v, want request %d flags 0x5", reqName(req), h, req)
	}
	p := make([]byte, h.Size)
	if _, err := readFullConn(g.front, p); err != nil {
		g.t.Fatalf("reply payload to %s: %v", reqName(req), err)
	}
	return p
}

func readFullConn(c net.Conn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := c.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// call sends a request with NEED_REPLY and returns the backend's status.
func (g *simGuest) call(req uint32, payload []byte, fds ...int) uint64 {
	g.t.Helper()
	g.send(req, flagNeedReply, payload, fds...)
	p := g.recvReply(req)
	if len(p) != 8 {
		g.t.Fatalf("%s ack of %d bytes", reqName(req), len(p))
	}
	return binary.LittleEndian.Uint64(p)
}

func (g *simGuest) mustCall(req uint32, payload []byte, fds ...int) {
	g.t.Helper()
	if st := g.call(req, payload, fds...); st != 0 {
		g.t.Fatalf("%s failed with status %d", reqName(req), st)
	}
}

func le64(v uint64) []byte { return u64Bytes(v) }

func state(idx, num uint32) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, idx)
	binary.LittleEndian.PutUint32(b[4:], num)
	return b
}

func eventfd(t testing.TB) int {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// dupFile returns an *os.File on a duplicate of fd, owned by the poller.
func dupFile(t testing.TB, fd int, name string) *os.File {
	d, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(d, true); err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(d), name)
}

// connect performs QEMU's start-up sequence and then the driver start-up
// sequence, and starts the guest's rx processing.
func (g *simGuest) connect() {
	t := g.t
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: g.vhost, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	g.front = c

	g.send(reqGetFeatures, 0, nil)
	if f := binary.LittleEndian.Uint64(g.recvReply(reqGetFeatures)); f&featVersion1 == 0 || f&featProtocolFeatures == 0 {
		t.Fatalf("features %#x lack VERSION_1 or PROTOCOL_FEATURES", f)
	}
	g.send(reqGetProtocolFeatures, 0, nil)
	pf := binary.LittleEndian.Uint64(g.recvReply(reqGetProtocolFeatures))
	if pf&protoConfig == 0 || pf&protoReplyAck == 0 {
		t.Fatalf("protocol features %#x lack CONFIG or REPLY_ACK", pf)
	}
	g.send(reqSetProtocolFeatures, 0, le64(protoConfig|protoReplyAck))
	g.mustCall(reqSetOwner, nil)
	for q := range g.rings {
		g.rings[q] = &simRing{num: simQueueSize, callFD: eventfd(t), kickFD: eventfd(t), errFD: eventfd(t), calls: make(chan struct{}, 1)}
		r := g.rings[q]
		r.call = dupFile(t, r.callFD, "call")
		r.kick = dupFile(t, r.kickFD, "kick")
		r.err = dupFile(t, r.errFD, "err")
		g.mustCall(reqSetVringCall, le64(uint64(q)), r.callFD)
		g.mustCall(reqSetVringErr, le64(uint64(q)), r.errFD)
	}
	cfg := make([]byte, 12+8)
	binary.LittleEndian.PutUint32(cfg[4:], 8)
	g.send(reqGetConfig, 0, cfg)
	rep := g.recvReply(reqGetConfig)
	if len(rep) != 20 || binary.LittleEndian.Uint64(rep[12:]) != simGuestCID {
		t.Fatalf("GET_CONFIG reply %x, want guest cid %d", rep, simGuestCID)
	}

	// Driver start.
	g.mustCall(reqSetFeatures, le64(featVersion1|featProtocolFeatures))
	mt := make([]byte, 8+2*32)
	binary.LittleEndian.PutUint32(mt, 2)
	putRegion(mt[8:], 0, simR0Size, simR0UVA, 0)
	putRegion(mt[40:], simR1GPA, simMemSize-simR0Size, simR1UVA, simR0Size)
	g.mustCall(reqSetMemTable, mt, g.memfd, g.memfd)

	ringGPA := uint64(0x1000)
	for q, r := range g.rings {
		r.descGPA = ringGPA
		r.availGPA = ringGPA + 16*simQueueSize
		r.usedGPA = (r.availGPA + 6 + 2*simQueueSize + 4095) &^ 4095
		ringGPA = (r.usedGPA + 6 + 8*simQueueSize + 4095) &^ 4095
		r.desc = g.at(r.descGPA, 16*simQueueSize)
		r.avail = g.at(r.availGPA, 6+2*simQueueSize)
		r.used = g.at(r.usedGPA, 6+8*simQueueSize)
		g.mustCall(reqSetVringNum, state(uint32(q), simQueueSize))
		g.mustCall(reqSetVringBase, state(uint32(q), 0))
		addr := make([]byte, 40)
		binary.LittleEndian.PutUint32(addr, uint32(q))
		binary.LittleEndian.PutUint64(addr[8:], simUVA(r.descGPA))
		binary.LittleEndian.PutUint64(addr[16:], simUVA(r.usedGPA))
		binary.LittleEndian.PutUint64(addr[24:], simUVA(r.availGPA))
		g.mustCall(reqSetVringAddr, addr)
	}
	g.setupRx()
	g.setupTx()
	for q, r := range g.rings {
		g.mustCall(reqSetVringKick, le64(uint64(q)), r.kickFD)
		g.mustCall(reqSetVringEnable, state(uint32(q), 1))
	}
	go g.callWatcher(txQueue)
	go g.rxLoop()
}

func putRegion(b []byte, gpa, size, uva, off uint64) {
	binary.LittleEndian.PutUint64(b, gpa)
	binary.LittleEndian.PutUint64(b[8:], size)
	binary.LittleEndian.PutUint64(b[16:], uva)
	binary.LittleEndian.PutUint64(b[24:], off)
}

// ---- split ring, driver side ----

func (r *simRing) setDesc(i int, addr uint64, n uint32, flags, next uint16) {
	d := r.desc[16*i:]
	binary.LittleEndian.PutUint64(d, addr)
	binary.LittleEndian.PutUint32(d[8:], n)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}

// publish puts head on the avail ring and releases the new index.
func (r *simRing) publish(heads ...int) {
	for _, h := range heads {
		binary.LittleEndian.PutUint16(r.avail[4+2*int(r.availIdx%uint16(r.num)):], uint16(h))
		r.availIdx++
	}
	// avail->flags (low half) stays 0: interrupts wanted.
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&r.avail[0])), uint32(r.availIdx)<<16)
}

func (r *simRing) setAvailIdx(v uint16) {
	r.availIdx = v
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&r.avail[0])), uint32(v)<<16)
}

func (r *simRing) notify() {
	var one [8]byte
	one[0] = 1
	_, _ = r.kick.Write(one[:])
}

// reap returns the used elements the device published since the last call.
func (r *simRing) reap() (ids []uint32, lens []uint32) {
	idx := uint16(atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.used[0]))) >> 16)
	for r.lastUsed != idx {
		e := r.used[4+8*int(r.lastUsed%uint16(r.num)):]
		ids = append(ids, binary.LittleEndian.Uint32(e))
		lens = append(lens, binary.LittleEndian.Uint32(e[4:]))
		r.lastUsed++
	}
	return ids, lens
}

func (g *simGuest) setupRx() {
	r := g.rings[rxQueue]
	var heads []int
	if g.rxSplit {
		// Older guests: a header descriptor chained to a 4 KiB payload one.
		for i := 0; i < simQueueSize; i += 2 {
			h := g.alloc(hdrLen)
			p := g.alloc(4096)
			g.rxBufs[i], g.rxBufs[i+1] = h, p
			r.setDesc(i, h, hdrLen, descFWrite|descFNext, uint16(i+1))
			r.setDesc(i+1, p, 4096, descFWrite, 0)
			heads = append(heads, i)
		}
	} else {
		for i := 0; i < simQueueSize; i++ {
			a := g.alloc(simRxBufLen)
			g.rxBufs[i] = a
			r.setDesc(i, a, simRxBufLen, descFWrite, 0)
			heads = append(heads, i)
		}
	}
	r.publish(heads...)
}

func (g *simGuest) setupTx() {
	r := g.rings[txQueue]
	for i := 0; i < simQueueSize; i += 2 {
		g.txBufs[i] = g.alloc(hdrLen)
		g.txBufs[i+1] = g.alloc(simTxBufLen)
		g.txFree = append(g.txFree, i)
	}
	_ = r
}

// callWatcher turns a queue's call eventfd into channel pokes.
func (g *simGuest) callWatcher(q int) {
	r := g.rings[q]
	var b [8]byte
	for {
		if _, err := r.call.Read(b[:]); err != nil {
			return
		}
		select {
		case r.calls <- struct{}{}:
		default:
		}
	}
}

// rxLoop receives packets, hands them to g.pkts and re-posts the buffers.
func (g *simGuest) rxLoop() {
	defer close(g.rxDone)
	r := g.rings[rxQueue]
	go g.callWatcher(rxQueue)
	for {
		select {
		case <-g.stopRx:
			return
		case <-r.calls:
		case <-time.After(100 * time.Millisecond):
		}
		ids, lens := r.reap()
		if len(ids) == 0 {
			continue
		}
		var heads []int
		for k, id := range ids {
			n := lens[k]
			heads = append(heads, int(id))
			if n == 0 {
				continue // a buffer the backend rejected
			}
			var raw []byte
			if g.rxSplit {
				raw = append(raw, g.at(g.rxBufs[id], hdrLen)...)
				if n > hdrLen {
					raw = append(raw, g.at(g.rxBufs[id+1], uint64(n-hdrLen))...)
				}
			} else {
				raw = append(raw, g.at(g.rxBufs[id], uint64(n))...)
			}
			h, err := parseHeader(raw)
			if err != nil {
				g.t.Errorf("rx packet: %v", err)
				continue
			}
			if int(h.Len) != len(raw)-hdrLen {
				g.t.Errorf("rx packet %s: len %d but buffer used %d", opName(h.Op), h.Len, len(raw)-hdrLen)
			}
			select {
			case g.pkts <- simPkt{h, raw[hdrLen:]}:
			case <-g.stopRx:
				return
			}
		}
		r.publish(heads...)
		r.notify()
	}
}

// sendPkt transmits one packet (header and payload in two descriptors).
func (g *simGuest) sendPkt(h header, payload []byte) {
	g.t.Helper()
	if err := g.trySendPkt(h, payload); err != nil && !errors.Is(err, errGuestStopped) {
		g.t.Error(err)
	}
}

func (g *simGuest) trySendPkt(h header, payload []byte) error {
	r := g.rings[txQueue]
	deadline := time.Now().Add(10 * time.Second)
	g.txMu.Lock()
	defer g.txMu.Unlock()
	for {
		if g.stopped {
			return errGuestStopped
		}
		ids, _ := r.reap()
		for _, id := range ids {
			g.txFree = append(g.txFree, int(id))
		}
		if len(g.txFree) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("tx ring full for 10s")
		}
		select {
		case <-r.calls:
		case <-time.After(10 * time.Millisecond):
		case <-g.stopRx:
			return errGuestStopped
		}
	}
	i := g.txFree[len(g.txFree)-1]
	g.txFree = g.txFree[:len(g.txFree)-1]
	h.Len = uint32(len(payload))
	if h.SrcCID == 0 {
		h.SrcCID = simGuestCID
	}
	if h.DstCID == 0 {
		h.DstCID = HostCID
	}
	if h.Type == 0 {
		h.Type = typeStream
	}
	h.put(g.at(g.txBufs[i], hdrLen))
	copy(g.at(g.txBufs[i+1], simTxBufLen), payload)
	if len(payload) > 0 {
		r.setDesc(i, g.txBufs[i], hdrLen, descFNext, uint16(i+1))
		r.setDesc(i+1, g.txBufs[i+1], uint32(len(payload)), 0, 0)
	} else {
		r.setDesc(i, g.txBufs[i], hdrLen, 0, 0)
	}
	r.publish(i)
	r.notify()
	return nil
}

// expectPkt waits for a packet that match accepts, skipping others.
func (g *simGuest) expectPkt(what string, match func(simPkt) bool) simPkt {
	g.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-g.pkts:
			if match(p) {
				return p
			}
			g.t.Logf("%s: skipping %s %+v", what, opName(p.h.Op), p.h)
		case <-timeout:
			g.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (g *simGuest) expectOp(op uint16) simPkt {
	g.t.Helper()
	return g.expectPkt(opName(op), func(p simPkt) bool { return p.h.Op == op })
}

// noPkt asserts that no packet arrives for d.
func (g *simGuest) noPkt(d time.Duration) {
	g.t.Helper()
	select {
	case p := <-g.pkts:
		g.t.Fatalf("unexpected packet %s %+v", opName(p.h.Op), p.h)
	case <-time.After(d):
	}
}

// errSignaled reports whether the backend signaled queue q's error eventfd.
func (g *simGuest) errSignaled(q int, within time.Duration) bool {
	r := g.rings[q]
	_ = r.err.SetReadDeadline(time.Now().Add(within))
	var b [8]byte
	_, err := r.err.Read(b[:])
	return err == nil
}

func (g *simGuest) dialHost(port uint32) (net.Conn, string, error) {
	c, err := net.Dial("unix", g.uds)
	if err != nil {
		return nil, "", err
	}
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		c.Close()
		return nil, "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := readLine(c)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, "", err
	}
	return c, line, nil
}

// sendRaw takes a free tx descriptor pair, lets build write arbitrary
// descriptors and avail entries, and kicks the device.
func (g *simGuest) sendRaw(build func(r *simRing, i int)) {
	g.txMu.Lock()
	defer g.txMu.Unlock()
	if g.stopped {
		g.t.Fatal("guest stopped")
	}
	r := g.rings[txQueue]
	ids, _ := r.reap()
	for _, id := range ids {
		g.txFree = append(g.txFree, int(id))
	}
	if len(g.txFree) == 0 {
		g.t.Fatal("no free tx descriptors")
	}
	i := g.txFree[len(g.txFree)-1]
	g.txFree = g.txFree[:len(g.txFree)-1]
	build(r, i)
	r.notify()
}
