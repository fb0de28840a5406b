package container

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update changes the container's memory, CPU and pids resources; fields
// not given keep their value. A refused update leaves the previous limits
// in force.
func (c *Container) Update(r *specs.LinuxResources) error {
	if r == nil {
		return fmt.Errorf("container %q: no resources given: %w", c.id, errdefs.ErrInvalidArgument)
	}
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	cfg := c.configCopy()
	res := cfg.Cgroups.Resources
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			res.Memory = *m.Limit
		}
		if m.Reservation != nil {
			res.MemoryReservation = *m.Reservation
		}
		if m.Swap != nil {
			res.MemorySwap = *m.Swap
		}
	}
	if cpu := r.CPU; cpu != nil {
		if cpu.Shares != nil {
			res.CpuShares = *cpu.Shares
		}
		if cpu.Quota != nil {
			res.CpuQuota = *cpu.Quota
		}
		if cpu.Period != nil {
			res.CpuPeriod = *cpu.Period
		}
		if cpu.Cpus != "" {
			res.CpusetCpus = cpu.Cpus
		}
		if cpu.Mems != "" {
			res.CpusetMems = cpu.Mems
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		limit := *r.Pids.Limit
		res.PidsLimit = &limit
	}
	if err := c.set(cfg); err != nil {
		return fmt.Errorf("container %q: update resources: %w", c.id, err)
	}
	return nil
}

// configCopy returns libcontainer's config with a cgroup configuration of
// its own: a change reaches libcontainer only through a successful Set,
// and a refused Set restores the limits of the untouched config (writing
// through the shared one would make that restore re-apply the refused
// values). Called with cfgMu held.
func (c *Container) configCopy() configs.Config {
	cfg := c.lc.Config()
	var cg cgroups.Cgroup
	if cfg.Cgroups != nil {
		cg = *cfg.Cgroups
	}
	var res cgroups.Resources
	if cg.Resources != nil {
		res = *cg.Resources
	}
	cg.Resources = &res
	cfg.Cgroups = &cg
	return cfg
}

// set applies cfg through libcontainer, classifying its refusals. Called
// with cfgMu held.
func (c *Container) set(cfg configs.Config) error {
	err := c.lc.Set(cfg)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, libcontainer.ErrNotRunning):
		return fmt.Errorf("container %q is not running: %w", c.id, errdefs.ErrFailedPrecondition)
	default:
		// The kernel refused a value (EINVAL, ERANGE, EBUSY for a limit
		// below current usage, ...): the request's mistake.
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
}

// FollowOnlineCPUs sets the container's cpuset to cpus (the guest's online
// CPUs) unless the container asked for specific CPUs: hot-added vCPUs are
// then usable by containers that were created before they arrived.
func (c *Container) FollowOnlineCPUs(cpus string) error {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	cfg := c.configCopy()
	res := cfg.Cgroups.Resources
	pinned := res.CpusetCpus != "" && res.CpusetCpus != c.followedCpus
	if pinned || res.CpusetCpus == cpus {
		return nil
	}
	res.CpusetCpus = cpus
	if err := c.set(cfg); err != nil {
		if errors.Is(err, errdefs.ErrFailedPrecondition) {
			return nil // not running: no process to give the CPUs to
		}
		return fmt.Errorf("container %q: set cpuset to %s: %w", c.id, cpus, err)
	}
	c.followedCpus = cpus
	return nil
}
