package hvsock

import (
	"encoding/binary"
	"errors"
	"testing"
)

// heapRing lays out a split ring of size 8 in a plain byte slice posing as
// guest memory: gpa and front-end address are both base+offset.
func heapRing(t *testing.T) (*virtqueue, *memTable, []byte) {
	const base = 0x10000
	mem := make([]byte, 64<<10)
	mt := &memTable{regions: []region{{gpa: base, uva: base, data: mem}}}
	q := &virtqueue{num: 8, addrSet: true, descAddr: base, availAddr: base + 0x100, usedAddr: base + 0x200}
	if err := q.setup(mt); err != nil {
		t.Fatal(err)
	}
	return q, mt, mem
}

func putDesc(mem []byte, i int, addr uint64, n uint32, flags, next uint16) {
	d := mem[16*i:]
	binary.LittleEndian.PutUint64(d, addr)
	binary.LittleEndian.PutUint32(d[8:], n)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}

func offer(mem []byte, idx uint16, head uint16) {
	binary.LittleEndian.PutUint16(mem[0x100+4+2*int(idx%8):], head)
	binary.LittleEndian.PutUint16(mem[0x102:], idx+1)
}

func TestVirtqueueChainAndUsed(t *testing.T) {
	q, mt, mem := heapRing(t)
	if _, ok, err := q.pop(); ok || err != nil {
		t.Fatalf("empty ring: ok %v err %v", ok, err)
	}
	putDesc(mem, 3, 0x10000+0x1000, 44, descFNext, 5)
	putDesc(mem, 5, 0x10000+0x2000, 100, 0, 0)
	offer(mem, 0, 3)
	head, ok, err := q.pop()
	if err != nil || !ok || head != 3 {
		t.Fatalf("pop: %d %v %v", head, ok, err)
	}
	segs, total, err := q.chain(mt, head, false, nil)
	if err != nil || len(segs) != 2 || total != 144 {
		t.Fatalf("chain: %d segs, %d bytes, %v", len(segs), total, err)
	}
	q.push(head, 0)
	if got := binary.LittleEndian.Uint16(mem[0x202:]); got != 1 {
		t.Fatalf("used idx %d", got)
	}
	if id := binary.LittleEndian.Uint32(mem[0x204:]); id != 3 {
		t.Fatalf("used id %d", id)
	}
	if !q.wantsInterrupt() {
		t.Fatal("interrupt suppressed without NO_INTERRUPT")
	}
	binary.LittleEndian.PutUint16(mem[0x100:], availFNoInterrupt)
	if q.wantsInterrupt() {
		t.Fatal("NO_INTERRUPT ignored")
	}
}

func TestVirtqueueRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(mem []byte)
		want  error
	}{
		{"address outside memory", func(mem []byte) { putDesc(mem, 0, 0x1, 10, 0, 0) }, ErrBadAddress},
		{"range past the end", func(mem []byte) { putDesc(mem, 0, 0x10000+64<<10-4, 10, 0, 0) }, ErrBadAddress},
		{"loop", func(mem []byte) {
			putDesc(mem, 0, 0x11000, 10, descFNext, 1)
			putDesc(mem, 1, 0x11000, 10, descFNext, 0)
		}, ErrBadChain},
		{"next out of range", func(mem []byte) { putDesc(mem, 0, 0x11000, 10, descFNext, 8) }, ErrBadChain},
		{"wrong direction", func(mem []byte) { putDesc(mem, 0, 0x11000, 10, descFWrite, 0) }, ErrBadChain},
		{"indirect", func(mem []byte) { putDesc(mem, 0, 0x11000, 16, descFIndirect, 0) }, ErrBadChain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, mt, mem := heapRing(t)
			tc.setup(mem)
			offer(mem, 0, 0)
			head, ok, err := q.pop()
			if err != nil || !ok {
				t.Fatalf("pop: %v %v", ok, err)
			}
			if _, _, err := q.chain(mt, head, false, nil); !errors.Is(err, tc.want) {
				t.Fatalf("chain: %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("head out of range", func(t *testing.T) {
		q, _, mem := heapRing(t)
		offer(mem, 0, 9)
		if _, _, err := q.pop(); !errors.Is(err, ErrBadRing) {
			t.Fatalf("pop: %v", err)
		}
	})
	t.Run("index runs ahead", func(t *testing.T) {
		q, _, mem := heapRing(t)
		binary.LittleEndian.PutUint16(mem[0x102:], 9)
		if _, _, err := q.pop(); !errors.Is(err, ErrBadRing) {
			t.Fatalf("pop: %v", err)
		}
	})
	t.Run("rings outside memory", func(t *testing.T) {
		mt := &memTable{regions: []region{{gpa: 0, uva: 0, data: make([]byte, 4096)}}}
		q := &virtqueue{num: 256, addrSet: true, descAddr: 0, availAddr: 0x1000, usedAddr: 0x2000}
		if err := q.setup(mt); !errors.Is(err, ErrBadAddress) {
			t.Fatalf("setup: %v", err)
		}
	})
}

func TestMemTableTranslation(t *testing.T) {
	a, b := make([]byte, 4096), make([]byte, 8192)
	mt := &memTable{regions: []region{{gpa: 0, uva: 0x7000, data: a}, {gpa: 0x100000, uva: 0x9000, data: b}}}
	if s, err := mt.guest(0x100000+8000, 192); err != nil || &s[0] != &b[8000] {
		t.Fatalf("guest: %v", err)
	}
	if s, err := mt.user(0x7000+10, 10); err != nil || &s[0] != &a[10] {
		t.Fatalf("user: %v", err)
	}
	for _, bad := range [][2]uint64{{4096, 1}, {4000, 200}, {0x100000 + 8192, 1}, {^uint64(0), 2}, {0x100000, 1 << 63}} {
		if _, err := mt.guest(bad[0], bad[1]); !errors.Is(err, ErrBadAddress) {
			t.Errorf("guest(%#x, %#x): %v", bad[0], bad[1], err)
		}
	}
}
