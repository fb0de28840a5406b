package hvsock

import (
	"errors"
	"fmt"
)

// ErrBadAddress reports a guest or front-end address that no memory region
// covers (or a range that crosses a region's end).
var ErrBadAddress = errors.New("address outside guest memory")

// regionDesc is one entry of a SET_MEM_TABLE message.
type regionDesc struct {
	GPA, Size, UVA, MmapOffset uint64
}

// region is one guest memory region shared by the front-end.
type region struct {
	gpa     uint64 // guest physical address of data[0]
	uva     uint64 // front-end (QEMU) virtual address of data[0]
	data    []byte // the region, starting at its mmap offset
	mapping []byte // the whole mapping, for unmapping
}

// memTable translates guest physical and front-end virtual addresses into
// slices of the shared memory. A memTable is immutable once built; the device
// swaps whole tables while its queues are stopped.
type memTable struct {
	regions []region
	unmap   func([]byte) error
}

// inRange reports whether [addr, addr+n) lies inside [base, base+size).
func inRange(addr, n, base, size uint64) bool {
	if addr < base {
		return false
	}
	off := addr - base
	return off <= size && n <= size-off
}

// guest returns n bytes of memory at guest physical address addr.
func (m *memTable) guest(addr, n uint64) ([]byte, error) {
	return m.find(addr, n, false)
}

// user returns n bytes of memory at front-end virtual address addr.
func (m *memTable) user(addr, n uint64) ([]byte, error) {
	return m.find(addr, n, true)
}

// find returns n bytes at addr, read as a front-end virtual address when
// virtual is true and as a guest physical one otherwise.
func (m *memTable) find(addr, n uint64, virtual bool) ([]byte, error) {
	if m != nil {
		for i := range m.regions {
			r := &m.regions[i]
			base := r.gpa
			if virtual {
				base = r.uva
			}
			if inRange(addr, n, base, uint64(len(r.data))) {
				off := addr - base
				return r.data[off : off+n : off+n], nil
			}
		}
	}
	space := "guest physical"
	if virtual {
		space = "front-end virtual"
	}
	return nil, fmt.Errorf("%s %#x+%#x: %w", space, addr, n, ErrBadAddress)
}

// close unmaps every region.
func (m *memTable) close() error {
	if m == nil {
		return nil
	}
	var errs []error
	for _, r := range m.regions {
		if m.unmap != nil && r.mapping != nil {
			if err := m.unmap(r.mapping); err != nil {
				errs = append(errs, fmt.Errorf("unmap region at %#x: %w", r.gpa, err))
			}
		}
	}
	m.regions = nil
	return errors.Join(errs...)
}
