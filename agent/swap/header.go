package swap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/containerd/errdefs"
)

// The layout of the kernel's union swap_header (include/linux/swap.h) for
// version 1: 1024 bytes of boot sector room, then the info fields, and
// the magic in the last 10 bytes of the first page. Fields are in the
// guest's byte order.
const (
	offVersion    = 1024
	offLastPage   = 1028
	offNrBadPages = 1032
	offUUID       = 1036
	offVolumeName = 1052
	uuidLen       = 16
	volumeNameLen = 16
	magicLen      = 10
	headerVersion = 1
	// MinPages is the smallest area accepted, header page included: the
	// kernel needs one usable page, mkswap refuses fewer than ten and the
	// Kata runtime sizes its swap files to at least that.
	MinPages = 10
)

// magic is the version 1 signature; "SWAP-SPACE" (version 0) is long gone
// from the kernel.
var magic = []byte("SWAPSPACE2")

// checkPageSize accepts the page sizes Linux runs with (4 KiB to 64 KiB).
func checkPageSize(pageSize int) error {
	if pageSize < 4096 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("page size %d is not a power of two between 4 KiB and 64 KiB: %w", pageSize, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Header returns the first page of a swap area of size bytes: the kernel
// uses pages 1 to last_page, where last_page is the index of the area's
// last whole page (capped at what the 32-bit field holds).
func Header(pageSize int, size int64, uuid [16]byte) ([]byte, error) {
	if err := checkPageSize(pageSize); err != nil {
		return nil, err
	}
	pages := size / int64(pageSize)
	if pages < MinPages {
		return nil, fmt.Errorf("%d bytes is too small for a swap area: at least %d pages of %d bytes (%d bytes) are needed: %w",
			size, MinPages, pageSize, MinPages*pageSize, errdefs.ErrFailedPrecondition)
	}
	last := min(pages-1, math.MaxUint32)
	h := make([]byte, pageSize)
	binary.NativeEndian.PutUint32(h[offVersion:], headerVersion)
	binary.NativeEndian.PutUint32(h[offLastPage:], uint32(last))
	binary.NativeEndian.PutUint32(h[offNrBadPages:], 0)
	copy(h[offUUID:offUUID+uuidLen], uuid[:])
	copy(h[pageSize-magicLen:], magic)
	return h, nil
}

// HasSignature reports whether page (an area's first page) carries the
// version 1 swap signature for this page size.
func HasSignature(page []byte, pageSize int) bool {
	return len(page) >= pageSize && pageSize >= magicLen && bytes.Equal(page[pageSize-magicLen:pageSize], magic)
}

// blank reports whether b is all zeros.
func blank(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
