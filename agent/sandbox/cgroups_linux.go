package sandbox

import (
	"errors"
	"strings"

	"github.com/opencontainers/cgroups"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
)

// CgroupPaths maps each container id to its cgroup v2 path relative to
// the cgroup mount (e.g. "/kata-agent/abc"), for the metrics collector.
// Containers without a unified cgroup (v1) are left out.
func (s *Sandbox) CgroupPaths() map[string]string {
	if !cgroups.IsCgroup2UnifiedMode() {
		return map[string]string{} // v1 or hybrid: no unified container cgroups
	}
	s.mu.Lock()
	cs := make([]*container.Container, 0, len(s.containers))
	for _, c := range s.containers {
		if c != nil {
			cs = append(cs, c)
		}
	}
	s.mu.Unlock()
	out := make(map[string]string, len(cs))
	for _, c := range cs {
		if p := c.CgroupPaths()[""]; p != "" {
			if rel, ok := strings.CutPrefix(p, cgroupMount); ok && strings.HasPrefix(rel, "/") {
				out[c.ID()] = rel
			}
		}
	}
	return out
}

// cgroupMount is where libcontainer expects the unified hierarchy.
const cgroupMount = "/sys/fs/cgroup"

// UpdateCpusets widens the cpuset of every container that did not ask for
// specific CPUs to cpus, the guest's online CPU list after a hot-plug.
func (s *Sandbox) UpdateCpusets(cpus string) error {
	var errs []error
	for _, id := range s.containerIDs() {
		c, err := s.Container(id)
		if err != nil {
			continue // removed or still being created meanwhile
		}
		if err := c.FollowOnlineCPUs(cpus); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
