package hvsock

import (
	"encoding/binary"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stillServes proves the tx and rx paths work: a packet for an unknown
// stream is answered with RST.
func stillServes(t *testing.T, g *simGuest, port uint32) {
	t.Helper()
	g.sendPkt(header{SrcPort: port, DstPort: 9, Op: opRW}, []byte("x"))
	g.expectPkt("RST proving the device still works", func(p simPkt) bool { return p.h.Op == opRst && p.h.DstPort == port })
}

func TestHostileTxChains(t *testing.T) {
	hdrOnly := func(g *simGuest, r *simRing, i int, h header) {
		h.put(g.at(g.txBufs[i], hdrLen))
	}
	cases := []struct {
		name  string
		build func(g *simGuest, r *simRing, i int)
	}{
		{"address outside memory", func(g *simGuest, r *simRing, i int) {
			r.setDesc(i, 0x7777_0000_0000, hdrLen, 0, 0)
		}},
		{"address in the hole between regions", func(g *simGuest, r *simRing, i int) {
			r.setDesc(i, simR0Size+4096, hdrLen, 0, 0)
		}},
		{"range crossing a region end", func(g *simGuest, r *simRing, i int) {
			r.setDesc(i, simR0Size-10, hdrLen, 0, 0)
		}},
		{"address overflow", func(g *simGuest, r *simRing, i int) {
			r.setDesc(i, ^uint64(0)-8, hdrLen, 0, 0)
		}},
		{"descriptor loop", func(g *simGuest, r *simRing, i int) {
			hdrOnly(g, r, i, header{SrcCID: simGuestCID, DstCID: HostCID, Type: typeStream, Op: opRW})
			r.setDesc(i, g.txBufs[i], hdrLen, descFNext, uint16(i+1))
			r.setDesc(i+1, g.txBufs[i+1], 16, descFNext, uint16(i))
		}},
		{"self loop", func(g *simGuest, r *simRing, i int) {
			r.setDesc(i, g.txBufs[i], hdrLen, descFNext, uint16(i))
		}},
		{"next out of range", func(g *simGuest, r *simRing, i int) {
			r.setDesc(i, g.txBufs[i], hdrLen, descFNext, 5000)
		}},
		{"device-writable descriptor", func(g *simGuest, r *simRing, i int) {
			r.setDesc(i, g.txBufs[i], hdrLen, descFWrite, 0)
		}},
		{"indirect descriptor", func(g *simGuest, r *simRing, i int) {
			r.setDesc(i, g.txBufs[i], 16, descFIndirect, 0)
		}},
		{"short header", func(g *simGuest, r *simRing, i int) {
			r.setDesc(i, g.txBufs[i], hdrLen-1, 0, 0)
		}},
		{"length beyond buffer", func(g *simGuest, r *simRing, i int) {
			hdrOnly(g, r, i, header{SrcCID: simGuestCID, DstCID: HostCID, Type: typeStream, Op: opRW, Len: 100})
			r.setDesc(i, g.txBufs[i], hdrLen, 0, 0)
		}},
		{"huge length", func(g *simGuest, r *simRing, i int) {
			hdrOnly(g, r, i, header{SrcCID: simGuestCID, DstCID: HostCID, Type: typeStream, Op: opRW, Len: 1 << 31})
			r.setDesc(i, g.txBufs[i], 0xffffffff, 0, 0)
		}},
	}
	g := newSimGuest(t, nil)
	g.connect()
	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g.sendRaw(func(r *simRing, i int) {
				c.build(g, r, i)
				r.publish(i)
			})
			if !g.errSignaled(txQueue, 5*time.Second) {
				t.Fatal("error eventfd not signaled")
			}
			stillServes(t, g, uint32(100+k))
		})
	}
	if n := g.b.numConnsForTest(); n != 0 {
		t.Fatalf("%d streams after hostile chains", n)
	}
}

func TestHostileRxBuffer(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	rx := g.rings[rxQueue]
	// The device takes rx buffers in order; spoil the next one.
	next := int(binary.LittleEndian.Uint16(rx.avail[4+2*int(rx.lastUsed%simQueueSize):]))
	good := g.rxBufs[next]
	rx.setDesc(next, 0xdead_0000_0000, simRxBufLen, descFWrite, 0)
	g.sendPkt(header{SrcPort: 77, DstPort: 9, Op: opRW}, []byte("x"))
	if !g.errSignaled(rxQueue, 5*time.Second) {
		t.Fatal("error eventfd not signaled for a bad rx buffer")
	}
	g.expectPkt("RST in the following buffer", func(p simPkt) bool { return p.h.Op == opRst && p.h.DstPort == 77 })
	rx.setDesc(next, good, simRxBufLen, descFWrite, 0)
	stillServes(t, g, 78)
}

func TestCorruptAvailRing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(r *simRing)
	}{
		{"index far ahead", func(r *simRing) { r.setAvailIdx(r.availIdx + 1000) }},
		{"head out of range", func(r *simRing) {
			binary.LittleEndian.PutUint16(r.avail[4+2*int(r.availIdx%simQueueSize):], 4000)
			r.setAvailIdx(r.availIdx + 1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := goroutineBaseline(t)
			g := newSimGuest(t, nil)
			g.connect()
			g.sendRaw(func(r *simRing, i int) { tc.corrupt(r) })
			if !g.errSignaled(txQueue, 5*time.Second) {
				t.Fatal("error eventfd not signaled")
			}
			// The queue is down, the backend is not: the front-end can
			// still talk to it and its departure ends Serve cleanly.
			g.send(reqGetFeatures, 0, nil)
			g.recvReply(reqGetFeatures)
			g.stopGuest()
			_ = g.front.Close()
			select {
			case err := <-g.serve:
				if err != nil {
					t.Fatalf("Serve: %v", err)
				}
				g.serve <- nil
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return")
			}
			g.cleanup()
			check()
		})
	}
}

// frontOnly connects a bare vhost-user front-end.
func frontOnly(t *testing.T) *simGuest {
	g := newSimGuest(t, nil)
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: g.vhost, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	g.front = c
	return g
}

func TestVhostUserRejectsBadRequests(t *testing.T) {
	g := frontOnly(t)
	memfd := func(size int64) int {
		fd, err := unix.MemfdCreate("m", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Ftruncate(fd, size); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	table := func(n uint32, size uint64) []byte {
		b := make([]byte, 8+32*int(n))
		binary.LittleEndian.PutUint32(b, n)
		for i := 0; i < int(n); i++ {
			putRegion(b[8+32*i:], uint64(i)<<30, size, 0x7f00_0000_0000+uint64(i)<<30, 0)
		}
		return b
	}
	f1 := memfd(1 << 20)
	defer unix.Close(f1)
	efd := eventfd(t)
	defer unix.Close(efd)
	cases := []struct {
		name    string
		req     uint32
		payload []byte
		fds     []int
	}{
		{"unknown request", 99, nil, nil},
		{"features not offered", reqSetFeatures, le64(1 << 5), nil},
		{"protocol features not offered", reqSetProtocolFeatures, le64(1 << 20), nil},
		{"short payload", reqSetFeatures, []byte{1, 2}, nil},
		{"queue size not a power of two", reqSetVringNum, state(0, 100), nil},
		{"queue size too big", reqSetVringNum, state(0, 65536), nil},
		{"queue index out of range", reqSetVringNum, state(2, 64), nil},
		{"vring base beyond 16 bits", reqSetVringBase, state(0, 70000), nil},
		{"mem table missing fd", reqSetMemTable, table(2, 1<<20), []int{f1}},
		{"mem table zero regions", reqSetMemTable, table(0, 1<<20), nil},
		{"mem table too many regions", reqSetMemTable, table(9, 1<<20), nil},
		{"region beyond its file", reqSetMemTable, table(1, 1<<30), []int{f1}},
		{"fd where none belongs", reqSetOwner, nil, []int{efd}},
		{"kick without fd", reqSetVringKick, le64(0 | vringNoFD), nil},
		{"kick unknown bits", reqSetVringKick, le64(1 << 40), []int{efd}},
		{"kick bad index", reqSetVringKick, le64(7), []int{efd}},
		{"config write", reqSetConfig, make([]byte, 20), nil},
		{"enable value 2", reqSetVringEnable, state(0, 2), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if st := g.call(c.req, c.payload, c.fds...); st == 0 {
				t.Fatal("accepted")
			}
		})
	}
	// The connection is still usable.
	g.send(reqGetFeatures, 0, nil)
	g.recvReply(reqGetFeatures)
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc")
	}
	return len(ents)
}

func TestFDsOfRejectedMessagesAreClosed(t *testing.T) {
	g := frontOnly(t)
	g.send(reqGetFeatures, 0, nil)
	g.recvReply(reqGetFeatures)
	before := countFDs(t)
	for i := 0; i < 20; i++ {
		efd := eventfd(t)
		if st := g.call(reqSetOwner, nil, efd); st == 0 {
			t.Fatal("SET_OWNER with an fd accepted")
		}
		_ = unix.Close(efd)
	}
	if after := countFDs(t); after > before+2 {
		t.Fatalf("fds: %d before, %d after 20 rejected messages", before, after)
	}
}

func TestVhostUserFatalErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		req     uint32
		flags   uint32
		payload []byte
	}{
		{"config read out of range", reqGetConfig, 0, func() []byte {
			b := make([]byte, 12)
			binary.LittleEndian.PutUint32(b, 300)
			binary.LittleEndian.PutUint32(b[4:], 8)
			return b
		}()},
		{"get vring base bad index", reqGetVringBase, 0, state(5, 0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := frontOnly(t)
			g.send(c.req, c.flags, c.payload)
			select {
			case err := <-g.serve:
				if err == nil {
					t.Fatal("Serve returned nil")
				}
				t.Logf("Serve: %v", err)
				g.serve <- nil
			case <-time.After(5 * time.Second):
				t.Fatal("Serve kept going without a reply it could give")
			}
		})
	}
	t.Run("bad version", func(t *testing.T) {
		g := frontOnly(t)
		b := make([]byte, msgHeaderLen)
		msgHeader{Request: reqGetFeatures, Flags: 2}.put(b)
		if _, err := g.front.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := <-g.serve; err == nil {
			t.Fatal("Serve accepted version 2")
		}
		g.serve <- nil
	})
	t.Run("oversized payload", func(t *testing.T) {
		g := frontOnly(t)
		b := make([]byte, msgHeaderLen)
		msgHeader{Request: reqSetFeatures, Flags: 1, Size: 1 << 20}.put(b)
		if _, err := g.front.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := <-g.serve; err == nil {
			t.Fatal("Serve accepted a 1 MiB payload")
		}
		g.serve <- nil
	})
}

func TestVringReconfigureWhileRunning(t *testing.T) {
	// The memory table is replaced (as on memory hot-plug) and the rings are
	// stopped and restarted (as on a guest driver reset); streams survive the
	// first and not the second.
	g := newSimGuest(t, nil)
	g.connect()
	r := g.route()
	hc, s := hostConnect(t, g, r, 1024, 256<<10)
	defer hc.Close()
	mt := make([]byte, 8+2*32)
	binary.LittleEndian.PutUint32(mt, 2)
	putRegion(mt[8:], 0, simR0Size, simR0UVA, 0)
	putRegion(mt[40:], simR1GPA, simMemSize-simR0Size, simR1UVA, simR0Size)
	g.mustCall(reqSetMemTable, mt, g.memfd, g.memfd)
	transfer(t, hc, s, 256<<10)

	g.mustCall(reqSetVringEnable, state(0, 0))
	g.mustCall(reqSetVringEnable, state(1, 0))
	for q := uint32(0); q < 2; q++ {
		g.send(reqGetVringBase, 0, state(q, 0))
		rep := g.recvReply(reqGetVringBase)
		// Every buffer the device took is back on the used ring, so the
		// next index it would consume equals used->idx.
		usedIdx := binary.LittleEndian.Uint16(g.rings[q].used[2:])
		if binary.LittleEndian.Uint32(rep) != q || uint16(binary.LittleEndian.Uint32(rep[4:])) != usedIdx {
			t.Fatalf("GET_VRING_BASE %d: %x, want index %d", q, rep, usedIdx)
		}
	}
	_ = hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := hc.Read(make([]byte, 1)); err == nil {
		t.Fatal("host stream survived the device stop")
	}
}

func TestShrunkMemoryFileDoesNotCrash(t *testing.T) {
	g := newSimGuest(t, nil)
	g.connect()
	// Stop the simulated guest's own accesses, then pull the pages away
	// from under the backend's mapping and kick it.
	g.stopGuest()
	if err := unix.Ftruncate(g.memfd, 0); err != nil {
		t.Fatal(err)
	}
	var one [8]byte
	one[0] = 1
	if _, err := unix.Write(g.rings[txQueue].kickFD, one[:]); err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	fd := g.rings[txQueue].errFD
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := unix.Read(fd, b[:]); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("error eventfd not signaled after a memory fault")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = g.front.Close()
	select {
	case err := <-g.serve:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
		g.serve <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}
