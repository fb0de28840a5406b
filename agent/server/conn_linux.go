package server

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// unsentBytes is the kernel's SIOCOUTQ for the connection: for vsock
// (Linux 6.11 and later), the bytes the virtio device has not consumed
// yet; for a unix socket, the bytes the peer has not read.
func unsentBytes(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("%T has no file descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		if errors.Is(err, syscall.EBADF) {
			return 0, net.ErrClosed
		}
		return 0, err
	}
	if ierr != nil {
		return 0, fmt.Errorf("SIOCOUTQ: %w", ierr)
	}
	return n, nil
}
