package container

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// pidHandle is a pidfd of a process, opened while the process was known to
// be the one we started: it keeps naming that process after it exits, so
// "is it still running" can never be answered by a later process that was
// given the same pid.
type pidHandle struct {
	pid int
	fd  int
}

// openPidHandle opens a pidfd for pid. The caller guarantees pid has not
// been reaped yet (so it cannot have been reused).
func openPidHandle(pid int) (*pidHandle, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	unix.CloseOnExec(fd)
	return &pidHandle{pid: pid, fd: fd}, nil
}

// running reports whether the process has not exited (a pidfd polls
// readable once its process is a zombie or gone).
func (h *pidHandle) running() (bool, error) {
	fds := []unix.PollFd{{Fd: int32(h.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll pidfd of %d: %w", h.pid, err)
		}
		return n == 0, nil
	}
}

func (h *pidHandle) close() {
	if h != nil && h.fd >= 0 {
		_ = unix.Close(h.fd)
		h.fd = -1
	}
}

// InitRunning checks, through the pidfd held since the init was started,
// that the container's init process still runs. It needs Options.HoldInit.
func (c *Container) InitRunning() error {
	// Polled under the lock: Destroy closes the pidfd under it, and a
	// closed descriptor number could meanwhile name another file.
	c.mu.Lock()
	h := c.initHandle
	if h == nil {
		c.mu.Unlock()
		return fmt.Errorf("container %q: its init process is not tracked: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	ok, err := h.running()
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("container %q: %w", c.id, err)
	}
	if !ok {
		return fmt.Errorf("container %q: init process %d has exited: %w", c.id, h.pid, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// PidNamespacePath returns the path under procRoot of the init process's
// pid namespace after checking that the init still runs. A caller that
// joins the namespace through the path checks InitRunning again once it
// has joined: the init living on throughout means its pid was never
// reused in between, so the path named its namespace.
func (c *Container) PidNamespacePath(procRoot string) (string, error) {
	if err := c.InitRunning(); err != nil {
		return "", err
	}
	return filepath.Join(procRoot, strconv.Itoa(c.init.pid), "ns", "pid"), nil
}
