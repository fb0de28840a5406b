package initsys

import (
	"fmt"
	"sort"
)

// Shutdown ends the guest when the agent is PID 1: it syncs, unmounts
// every filesystem it can (deepest first) and powers off. It returns only
// if powering off failed. When not PID 1 it only syncs.
func Shutdown(o Options) error {
	o.defaults()
	s := o.Sys
	s.Sync()
	if !o.IsInit {
		return nil
	}
	if info, err := readMountinfo(s); err == nil {
		points := make([]string, 0, len(info))
		for _, m := range info {
			if m.Mountpoint != "/" {
				points = append(points, m.Mountpoint)
			}
		}
		// Deepest paths first so children go before their parents.
		sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
		for _, p := range points {
			if err := s.Unmount(p, 0); err != nil {
				o.Log.Debug("unmount at shutdown", "mount_point", p, "error", err)
			}
		}
	} else {
		o.Log.Warn("shutdown: mount table unreadable, powering off without unmounting", "error", err)
	}
	s.Sync()
	o.flushLog()
	if err := s.PowerOff(); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	return nil
}
