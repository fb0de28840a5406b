package container

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// SignalAll signals every process of the container (all pids in its
// cgroup); a container with nothing left running succeeds, as
// Process.Signal does.
func (c *Container) SignalAll(sig unix.Signal) error {
	if c.init.Exited() && !c.hasProcesses() {
		return nil
	}
	return c.signalAll(sig)
}

func (c *Container) hasProcesses() bool {
	pids, err := c.lc.Processes()
	return err == nil && len(pids) > 0
}

func (c *Container) signalAll(sig unix.Signal) error {
	pids, err := c.lc.Processes()
	if err != nil {
		return fmt.Errorf("container %q: list processes: %w", c.id, err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("container %q: signal pid %d: %w", c.id, pid, err)
		}
	}
	return nil
}
