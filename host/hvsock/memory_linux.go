package hvsock

import (
	"fmt"
	"math"

	"golang.org/x/sys/unix"
)

// mapRegions maps each region's file descriptor shared and read-write. It
// closes every fd, whether or not mapping succeeds.
func mapRegions(descs []regionDesc, fds []int) (_ *memTable, err error) {
	defer closeFDs(fds)
	if len(descs) != len(fds) {
		return nil, fmt.Errorf("memory table: %d regions but %d file descriptors", len(descs), len(fds))
	}
	m := &memTable{unmap: unix.Munmap}
	defer func() {
		if err != nil {
			_ = m.close()
		}
	}()
	for i, d := range descs {
		if d.Size == 0 {
			return nil, fmt.Errorf("memory region %d: zero size", i)
		}
		total := d.MmapOffset + d.Size
		if total < d.Size || total > math.MaxInt {
			return nil, fmt.Errorf("memory region %d: offset %#x + size %#x overflows", i, d.MmapOffset, d.Size)
		}
		if d.GPA+d.Size < d.GPA || d.UVA+d.Size < d.UVA {
			return nil, fmt.Errorf("memory region %d: address %#x/%#x + size %#x overflows", i, d.GPA, d.UVA, d.Size)
		}
		// Touching a shared mapping past the end of its file raises SIGBUS,
		// so the file must cover the whole region.
		var st unix.Stat_t
		if err := unix.Fstat(fds[i], &st); err != nil {
			return nil, fmt.Errorf("memory region %d: fstat: %w", i, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG && uint64(st.Size) < total {
			return nil, fmt.Errorf("memory region %d: file of %d bytes is shorter than offset+size %#x", i, st.Size, total)
		}
		mapping, err := unix.Mmap(fds[i], 0, int(total), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("mmap memory region %d (gpa %#x size %#x): %w", i, d.GPA, d.Size, err)
		}
		m.regions = append(m.regions, region{
			gpa:     d.GPA,
			uva:     d.UVA,
			data:    mapping[d.MmapOffset:total:total],
			mapping: mapping,
		})
	}
	return m, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
}
