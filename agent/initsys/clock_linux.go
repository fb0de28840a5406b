package initsys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// maxSettableSec bounds SetTime: the kernel refuses times past
// KTIME_SEC_MAX less 30 years of uptime (about 8.27e9 s, year 2232) with
// EINVAL, which would come back as an unclassed failure.
const maxSettableSec = 8_000_000_000

// SetTime sets the system clock (settimeofday), as SetGuestDateTime asks
// after a VM resumes from a snapshot with a stale clock.
func SetTime(sec, usec int64) error {
	if sec < 0 || usec < 0 || usec >= 1_000_000 {
		return fmt.Errorf("time %d s %d us: %w", sec, usec, errdefs.ErrInvalidArgument)
	}
	if sec > maxSettableSec {
		return fmt.Errorf("time %d s is past what the kernel can set (%d s): %w", sec, maxSettableSec, errdefs.ErrInvalidArgument)
	}
	tv := unix.Timeval{Sec: sec, Usec: usec}
	if err := unix.Settimeofday(&tv); err != nil {
		return fmt.Errorf("settimeofday(%d, %d): %w", sec, usec, err)
	}
	return nil
}

// Linux random driver ioctls (include/uapi/linux/random.h).
const (
	rndAddEntropy  = 0x40085203 // _IOW('R', 0x03, int[2])
	rndReseedCRNG  = 0x5207     // _IO('R', 0x07)
	maxReseedBytes = 64 << 10
)

// RandomDevice is the device ReseedRandom writes to.
var RandomDevice = "/dev/random"

// ReseedRandom mixes data into the kernel's entropy pool and credits it
// (RNDADDENTROPY, which needs CAP_SYS_ADMIN), then asks for a CRNG reseed.
// Without the privilege the data is still mixed in by writing it to the
// random device, only not credited.
func ReseedRandom(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("reseed with no data: %w", errdefs.ErrInvalidArgument)
	}
	if len(data) > maxReseedBytes {
		return fmt.Errorf("reseed with %d bytes, at most %d: %w", len(data), maxReseedBytes, errdefs.ErrInvalidArgument)
	}
	f, err := os.OpenFile(RandomDevice, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", RandomDevice, err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	words := (len(data) + 3) / 4
	info := make([]byte, 8+4*words)
	binary.NativeEndian.PutUint32(info[0:], uint32(len(data)*8))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(data)))
	copy(info[8:], data)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndAddEntropy, uintptr(unsafe.Pointer(&info[0])))
	if errno == 0 {
		// Best effort: older kernels lack RNDRESEEDCRNG.
		_, _, _ = unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndReseedCRNG, 0)
		return nil
	}
	if !errors.Is(errno, unix.EPERM) {
		return fmt.Errorf("RNDADDENTROPY on %s: %w", RandomDevice, errno)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", RandomDevice, err)
	}
	return nil
}
