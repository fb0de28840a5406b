package uevent

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// netlinkSource reads the kernel's uevent multicast group. The socket is
// non-blocking and wrapped in an *os.File so that reads park in Go's
// network poller (no thread blocked) and Close wakes a pending Read.
type netlinkSource struct {
	file *os.File
	rc   syscall.RawConn
	buf  []byte
}

// OpenNetlink opens a NETLINK_KOBJECT_UEVENT socket bound to the kernel's
// multicast group 1.
func OpenNetlink() (Source, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("open uevent netlink socket: %w", err)
	}
	// A larger receive buffer: a hot-plugged DIMM emits a burst of events.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind uevent netlink socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "uevent-netlink")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("uevent netlink socket: %w", err)
	}
	return &netlinkSource{file: f, rc: rc, buf: make([]byte, MaxMessageSize+1)}, nil
}

func (s *netlinkSource) Read() ([]byte, error) {
	for {
		var (
			n    int
			from unix.Sockaddr
			rerr error
		)
		err := s.rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), s.buf, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return nil, fmt.Errorf("read uevent: %w", err)
		}
		switch rerr {
		case nil:
		case unix.EINTR, unix.ENOBUFS:
			// ENOBUFS: an overrun lost events; waiters also check sysfs.
			continue
		default:
			return nil, fmt.Errorf("read uevent: %w", rerr)
		}
		// Only the kernel (port id 0) sends on group 1; ignore anything else.
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			continue
		}
		if n > MaxMessageSize {
			continue
		}
		out := make([]byte, n)
		copy(out, s.buf[:n])
		return out, nil
	}
}

func (s *netlinkSource) Close() error { return s.file.Close() }
