package ocipb

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// FromSpec converts a runtime-spec spec to the protocol's message, as a
// host-side client sends it. Fields the protocol cannot carry are dropped.
func FromSpec(s *specs.Spec) *pb.Spec {
	if s == nil {
		return nil
	}
	out := &pb.Spec{
		Version:     s.Version,
		Hostname:    s.Hostname,
		Annotations: copyMap(s.Annotations),
		Process:     FromProcess(s.Process),
	}
	if s.Root != nil {
		out.Root = &pb.Root{Path: s.Root.Path, Readonly: s.Root.Readonly}
	}
	for _, m := range s.Mounts {
		out.Mounts = append(out.Mounts, &pb.Mount{Destination: m.Destination, Source: m.Source, Type: m.Type, Options: append([]string(nil), m.Options...)})
	}
	if l := s.Linux; l != nil {
		pl := &pb.Linux{
			Sysctl:            copyMap(l.Sysctl),
			CgroupsPath:       l.CgroupsPath,
			RootfsPropagation: l.RootfsPropagation,
			MaskedPaths:       append([]string(nil), l.MaskedPaths...),
			ReadonlyPaths:     append([]string(nil), l.ReadonlyPaths...),
			MountLabel:        l.MountLabel,
			Resources:         FromResources(l.Resources),
		}
		for _, m := range l.UIDMappings {
			pl.UIDMappings = append(pl.UIDMappings, &pb.LinuxIDMapping{HostID: m.HostID, ContainerID: m.ContainerID, Size: m.Size})
		}
		for _, m := range l.GIDMappings {
			pl.GIDMappings = append(pl.GIDMappings, &pb.LinuxIDMapping{HostID: m.HostID, ContainerID: m.ContainerID, Size: m.Size})
		}
		for _, ns := range l.Namespaces {
			pl.Namespaces = append(pl.Namespaces, &pb.LinuxNamespace{Type: string(ns.Type), Path: ns.Path})
		}
		for _, d := range l.Devices {
			pd := &pb.LinuxDevice{Path: d.Path, Type: d.Type, Major: d.Major, Minor: d.Minor}
			if d.FileMode != nil {
				pd.FileMode = uint32(*d.FileMode)
			}
			if d.UID != nil {
				pd.UID = *d.UID
			}
			if d.GID != nil {
				pd.GID = *d.GID
			}
			pl.Devices = append(pl.Devices, pd)
		}
		if sc := l.Seccomp; sc != nil {
			ps := &pb.LinuxSeccomp{DefaultAction: string(sc.DefaultAction)}
			for _, a := range sc.Architectures {
				ps.Architectures = append(ps.Architectures, string(a))
			}
			for _, f := range sc.Flags {
				ps.Flags = append(ps.Flags, string(f))
			}
			for _, sys := range sc.Syscalls {
				psys := &pb.LinuxSyscall{Names: append([]string(nil), sys.Names...), Action: string(sys.Action)}
				if sys.ErrnoRet != nil {
					psys.ErrnoRet = &pb.LinuxSyscall_Errnoret{Errnoret: uint32(*sys.ErrnoRet)}
				}
				for _, a := range sys.Args {
					psys.Args = append(psys.Args, &pb.LinuxSeccompArg{Index: uint64(a.Index), Value: a.Value, ValueTwo: a.ValueTwo, Op: string(a.Op)})
				}
				ps.Syscalls = append(ps.Syscalls, psys)
			}
			pl.Seccomp = ps
		}
		out.Linux = pl
	}
	return out
}

// FromProcess converts a runtime-spec process to the protocol's message.
func FromProcess(p *specs.Process) *pb.Process {
	if p == nil {
		return nil
	}
	out := &pb.Process{
		Terminal:        p.Terminal,
		Args:            append([]string(nil), p.Args...),
		Env:             append([]string(nil), p.Env...),
		Cwd:             p.Cwd,
		NoNewPrivileges: p.NoNewPrivileges,
		ApparmorProfile: p.ApparmorProfile,
		SelinuxLabel:    p.SelinuxLabel,
		User: &pb.User{UID: p.User.UID, GID: p.User.GID, AdditionalGids: append([]uint32(nil), p.User.AdditionalGids...),
			Username: p.User.Username},
	}
	if p.ConsoleSize != nil {
		out.ConsoleSize = &pb.Box{Height: uint32(p.ConsoleSize.Height), Width: uint32(p.ConsoleSize.Width)}
	}
	if c := p.Capabilities; c != nil {
		out.Capabilities = &pb.LinuxCapabilities{
			Bounding: append([]string(nil), c.Bounding...), Effective: append([]string(nil), c.Effective...),
			Inheritable: append([]string(nil), c.Inheritable...), Permitted: append([]string(nil), c.Permitted...),
			Ambient: append([]string(nil), c.Ambient...),
		}
	}
	for _, r := range p.Rlimits {
		out.Rlimits = append(out.Rlimits, &pb.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
	}
	if p.OOMScoreAdj != nil {
		out.OOMScoreAdj = int64(*p.OOMScoreAdj)
	}
	return out
}

// FromResources converts runtime-spec resources to the protocol's message.
func FromResources(r *specs.LinuxResources) *pb.LinuxResources {
	if r == nil {
		return nil
	}
	out := &pb.LinuxResources{}
	for _, d := range r.Devices {
		pd := &pb.LinuxDeviceCgroup{Allow: d.Allow, Type: d.Type, Access: d.Access, Major: -1, Minor: -1}
		if d.Major != nil {
			pd.Major = *d.Major
		}
		if d.Minor != nil {
			pd.Minor = *d.Minor
		}
		out.Devices = append(out.Devices, pd)
	}
	if m := r.Memory; m != nil {
		pm := &pb.LinuxMemory{
			Limit: deref64(m.Limit), Reservation: deref64(m.Reservation), Swap: deref64(m.Swap),
			KernelTCP: deref64(m.KernelTCP),
		}
		if m.Swappiness != nil {
			pm.Swappiness = *m.Swappiness
		}
		if m.DisableOOMKiller != nil {
			pm.DisableOOMKiller = *m.DisableOOMKiller
		}
		out.Memory = pm
	}
	if c := r.CPU; c != nil {
		out.CPU = &pb.LinuxCPU{Shares: derefu64(c.Shares), Quota: deref64(c.Quota), Period: derefu64(c.Period),
			RealtimeRuntime: deref64(c.RealtimeRuntime), RealtimePeriod: derefu64(c.RealtimePeriod), Cpus: c.Cpus, Mems: c.Mems}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		out.Pids = &pb.LinuxPids{Limit: *r.Pids.Limit}
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &pb.LinuxHugepageLimit{Pagesize: h.Pagesize, Limit: h.Limit})
	}
	return out
}

func deref64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func derefu64(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}
