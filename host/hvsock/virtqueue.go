package hvsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Split virtqueue layout (virtio spec, "Split Virtqueues").
const (
	descSize = 16

	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4

	availFNoInterrupt = 1
)

// ErrBadRing reports a virtqueue the guest has corrupted beyond recovery: the
// device stops processing it until the front-end sets it up again.
var ErrBadRing = errors.New("virtqueue corrupted")

// ErrBadChain reports one descriptor chain the device cannot use; the chain is
// returned to the guest unused and processing continues.
var ErrBadChain = errors.New("bad descriptor chain")

// virtqueue is the device side of one split virtqueue living in guest memory.
// The vhost-user handler configures it while the queue processors are stopped;
// while they run, only the processor that owns the queue touches it.
type virtqueue struct {
	index int
	num   uint16 // queue size, a power of two; 0 until SET_VRING_NUM

	addrSet                       bool
	descAddr, availAddr, usedAddr uint64 // front-end virtual addresses

	desc  []byte
	avail []byte
	used  []byte

	availIdxOff int // offset of the aligned word holding avail->idx
	availIdxHi  bool

	lastAvail uint16 // next avail ring slot to consume
	usedIdx   uint16 // our copy of used->idx
}

// setup translates the ring addresses through mem and checks them.
func (q *virtqueue) setup(mem *memTable) error {
	if q.num == 0 || !q.addrSet {
		return fmt.Errorf("vring %d: size or addresses not set", q.index)
	}
	n := uint64(q.num)
	var err error
	if q.desc, err = mem.user(q.descAddr, n*descSize); err != nil {
		return fmt.Errorf("vring %d descriptor table: %w", q.index, err)
	}
	if q.avail, err = mem.user(q.availAddr, 4+2*n); err != nil {
		return fmt.Errorf("vring %d available ring: %w", q.index, err)
	}
	if q.used, err = mem.user(q.usedAddr, 4+8*n); err != nil {
		return fmt.Errorf("vring %d used ring: %w", q.index, err)
	}
	// Go's atomics are 32-bit at least, so avail->idx is read through the
	// aligned 32-bit word that contains it, and used->idx is published
	// together with used->flags (which the device owns) in one 32-bit store.
	if uintptr(unsafe.Pointer(&q.used[0]))%4 != 0 {
		return fmt.Errorf("vring %d: used ring at %#x is not 4-byte aligned", q.index, q.usedAddr)
	}
	switch uintptr(unsafe.Pointer(&q.avail[0])) % 4 {
	case 0:
		q.availIdxOff, q.availIdxHi = 0, true
	case 2:
		q.availIdxOff, q.availIdxHi = 2, false
	default:
		return fmt.Errorf("vring %d: available ring at %#x is not 2-byte aligned", q.index, q.availAddr)
	}
	q.usedIdx = binary.LittleEndian.Uint16(q.used[2:])
	return nil
}

// availIdx loads avail->idx with acquire semantics: descriptor reads that
// follow see what the guest wrote before publishing the index.
func (q *virtqueue) availIdx() uint16 {
	w := atomic.LoadUint32((*uint32)(unsafe.Pointer(&q.avail[q.availIdxOff])))
	if q.availIdxHi {
		return uint16(w >> 16)
	}
	return uint16(w)
}

// pop takes the next available chain head. ok is false when the ring is empty.
func (q *virtqueue) pop() (head uint16, ok bool, err error) {
	idx := q.availIdx()
	if idx == q.lastAvail {
		return 0, false, nil
	}
	if pending := idx - q.lastAvail; pending > q.num {
		return 0, false, fmt.Errorf("%w: vring %d: avail idx %d is %d entries ahead of %d (size %d)", ErrBadRing, q.index, idx, pending, q.lastAvail, q.num)
	}
	slot := 4 + 2*int(q.lastAvail&(q.num-1))
	head = binary.LittleEndian.Uint16(q.avail[slot:])
	if head >= q.num {
		return 0, false, fmt.Errorf("%w: vring %d: chain head %d out of range (size %d)", ErrBadRing, q.index, head, q.num)
	}
	q.lastAvail++
	return head, true, nil
}

// unpop gives back the chain taken by the last pop.
func (q *virtqueue) unpop() { q.lastAvail-- }

// chain walks the descriptor chain starting at head and returns its buffers
// translated into guest memory. write selects device-writable buffers (the rx
// queue) or device-readable ones (the tx queue); a chain mixing the two, a
// loop, an out-of-range index or address, or an indirect table is an error.
func (q *virtqueue) chain(mem *memTable, head uint16, write bool, segs [][]byte) ([][]byte, int, error) {
	segs = segs[:0]
	total := 0
	i := head
	for n := 0; ; n++ {
		if n >= int(q.num) {
			return segs, 0, fmt.Errorf("%w: vring %d head %d: chain longer than the ring (loop)", ErrBadChain, q.index, head)
		}
		d := q.desc[int(i)*descSize:]
		addr := binary.LittleEndian.Uint64(d)
		length := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])
		if flags&descFIndirect != 0 {
			return segs, 0, fmt.Errorf("%w: vring %d head %d: indirect descriptor not negotiated", ErrBadChain, q.index, head)
		}
		if (flags&descFWrite != 0) != write {
			return segs, 0, fmt.Errorf("%w: vring %d head %d: descriptor %d has write flag %v, want %v", ErrBadChain, q.index, head, i, !write, write)
		}
		if length > 0 {
			buf, err := mem.guest(addr, uint64(length))
			if err != nil {
				return segs, 0, fmt.Errorf("%w: vring %d head %d descriptor %d: %w", ErrBadChain, q.index, head, i, err)
			}
			segs = append(segs, buf)
			total += len(buf)
		}
		if flags&descFNext == 0 {
			return segs, total, nil
		}
		if next >= q.num {
			return segs, 0, fmt.Errorf("%w: vring %d head %d: next index %d out of range", ErrBadChain, q.index, head, next)
		}
		i = next
	}
}

// push publishes a used element. The 32-bit atomic store of flags and idx is
// a release: the guest sees the element and the data before the new index.
func (q *virtqueue) push(head uint16, written uint32) {
	slot := 4 + 8*int(q.usedIdx&(q.num-1))
	binary.LittleEndian.PutUint32(q.used[slot:], uint32(head))
	binary.LittleEndian.PutUint32(q.used[slot+4:], written)
	q.usedIdx++
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&q.used[0])), uint32(q.usedIdx)<<16)
}

// wantsInterrupt reads the guest's interrupt suppression flag. Called after
// push, whose atomic store orders the flag read after the index write.
func (q *virtqueue) wantsInterrupt() bool {
	w := atomic.LoadUint32((*uint32)(unsafe.Pointer(&q.avail[q.availIdxOff])))
	var flags uint16
	if q.availIdxHi {
		flags = uint16(w)
	} else {
		flags = binary.LittleEndian.Uint16(q.avail[0:])
	}
	return flags&availFNoInterrupt == 0
}
