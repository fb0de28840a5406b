package reaper

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// SiginfoPid returns si_pid of a siginfo filled by waitid: zero when
// WNOHANG found no exited child.
func SiginfoPid(info *unix.Siginfo) int {
	// Layout on Linux: int si_signo, si_errno, si_code; (padding on 64-bit
	// to 8-byte alignment of the union, i.e. offset 16 on 64-bit, 12 on 32)
	// then the union, whose first member for SIGCHLD is pid_t si_pid.
	const ptr = unsafe.Sizeof(uintptr(0))
	const off = (12 + ptr - 1) / ptr * ptr
	return int(*(*int32)(unsafe.Pointer(uintptr(unsafe.Pointer(info)) + off)))
}
