// Package ocipb converts between the OCI runtime spec as the agent protocol
// carries it (agentpb.Spec, proto3 messages) and the runtime-spec Go types
// (specs.Spec) that libcontainer's specconv consumes.
//
// proto3 has no presence for scalars, so a zero number in a resource field
// means "not set" and becomes a nil pointer in specs; this is also what the
// Kata runtime means when it clears resource fields before sending a spec.
package ocipb

import (
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// ToSpec converts the protocol's spec to a runtime-spec one. It only
// translates; semantic checks (rootfs, ids) belong to the caller.
func ToSpec(s *pb.Spec) (*specs.Spec, error) {
	if s == nil {
		return nil, fmt.Errorf("spec is nil")
	}
	out := &specs.Spec{
		Version:     s.Version,
		Hostname:    s.Hostname,
		Annotations: copyMap(s.Annotations),
	}
	if out.Version == "" {
		out.Version = specs.Version
	}
	if s.Process != nil {
		out.Process = ToProcess(s.Process)
	}
	if s.Root != nil {
		out.Root = &specs.Root{Path: s.Root.Path, Readonly: s.Root.Readonly}
	}
	for _, m := range s.Mounts {
		if m == nil {
			continue
		}
		out.Mounts = append(out.Mounts, specs.Mount{
			Destination: m.Destination,
			Source:      m.Source,
			Type:        m.Type,
			Options:     append([]string(nil), m.Options...),
		})
	}
	// Hooks are dropped: the runtime strips them, and a hook would run a
	// host-chosen program as root in the guest outside any container.
	if s.Linux != nil {
		l, err := toLinux(s.Linux)
		if err != nil {
			return nil, err
		}
		out.Linux = l
	}
	return out, nil
}

// ToProcess converts a protocol process to a runtime-spec process.
func ToProcess(p *pb.Process) *specs.Process {
	if p == nil {
		return nil
	}
	out := &specs.Process{
		Terminal:        p.Terminal,
		Args:            append([]string(nil), p.Args...),
		Env:             append([]string(nil), p.Env...),
		Cwd:             p.Cwd,
		NoNewPrivileges: p.NoNewPrivileges,
		ApparmorProfile: p.ApparmorProfile,
		SelinuxLabel:    p.SelinuxLabel,
	}
	if p.ConsoleSize != nil {
		out.ConsoleSize = &specs.Box{Height: uint(p.ConsoleSize.Height), Width: uint(p.ConsoleSize.Width)}
	}
	if p.User != nil {
		out.User = specs.User{
			UID:            p.User.UID,
			GID:            p.User.GID,
			AdditionalGids: append([]uint32(nil), p.User.AdditionalGids...),
			Username:       p.User.Username,
		}
	}
	if c := p.Capabilities; c != nil {
		out.Capabilities = &specs.LinuxCapabilities{
			Bounding:    append([]string(nil), c.Bounding...),
			Effective:   append([]string(nil), c.Effective...),
			Inheritable: append([]string(nil), c.Inheritable...),
			Permitted:   append([]string(nil), c.Permitted...),
			Ambient:     append([]string(nil), c.Ambient...),
		}
	}
	for _, r := range p.Rlimits {
		if r == nil {
			continue
		}
		out.Rlimits = append(out.Rlimits, specs.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
	}
	if p.OOMScoreAdj != 0 {
		v := int(p.OOMScoreAdj)
		out.OOMScoreAdj = &v
	}
	return out
}

func toLinux(l *pb.Linux) (*specs.Linux, error) {
	out := &specs.Linux{
		Sysctl:            copyMap(l.Sysctl),
		CgroupsPath:       l.CgroupsPath,
		RootfsPropagation: l.RootfsPropagation,
		MaskedPaths:       append([]string(nil), l.MaskedPaths...),
		ReadonlyPaths:     append([]string(nil), l.ReadonlyPaths...),
		MountLabel:        l.MountLabel,
		UIDMappings:       toIDMaps(l.UIDMappings),
		GIDMappings:       toIDMaps(l.GIDMappings),
		Resources:         ToResources(l.Resources),
	}
	for _, ns := range l.Namespaces {
		if ns == nil {
			continue
		}
		out.Namespaces = append(out.Namespaces, specs.LinuxNamespace{Type: specs.LinuxNamespaceType(ns.Type), Path: ns.Path})
	}
	for _, d := range l.Devices {
		if d == nil {
			continue
		}
		sd := specs.LinuxDevice{Path: d.Path, Type: d.Type, Major: d.Major, Minor: d.Minor}
		if d.FileMode != 0 {
			m := os.FileMode(d.FileMode)
			sd.FileMode = &m
		}
		uid, gid := d.UID, d.GID
		sd.UID, sd.GID = &uid, &gid
		out.Devices = append(out.Devices, sd)
	}
	if sc := l.Seccomp; sc != nil {
		s := &specs.LinuxSeccomp{DefaultAction: specs.LinuxSeccompAction(sc.DefaultAction)}
		for _, a := range sc.Architectures {
			s.Architectures = append(s.Architectures, specs.Arch(a))
		}
		for _, f := range sc.Flags {
			s.Flags = append(s.Flags, specs.LinuxSeccompFlag(f))
		}
		for _, sys := range sc.Syscalls {
			if sys == nil {
				continue
			}
			ss := specs.LinuxSyscall{Names: append([]string(nil), sys.Names...), Action: specs.LinuxSeccompAction(sys.Action)}
			if e, ok := sys.ErrnoRet.(*pb.LinuxSyscall_Errnoret); ok {
				v := uint(e.Errnoret)
				ss.ErrnoRet = &v
			}
			for _, a := range sys.Args {
				if a == nil {
					continue
				}
				ss.Args = append(ss.Args, specs.LinuxSeccompArg{Index: uint(a.Index), Value: a.Value, ValueTwo: a.ValueTwo, Op: specs.LinuxSeccompOperator(a.Op)})
			}
			s.Syscalls = append(s.Syscalls, ss)
		}
		out.Seccomp = s
	}
	if l.IntelRdt != nil {
		out.IntelRdt = &specs.LinuxIntelRdt{L3CacheSchema: l.IntelRdt.L3CacheSchema}
	}
	return out, nil
}

func toIDMaps(ms []*pb.LinuxIDMapping) []specs.LinuxIDMapping {
	var out []specs.LinuxIDMapping
	for _, m := range ms {
		if m == nil {
			continue
		}
		out = append(out, specs.LinuxIDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size})
	}
	return out
}

// ToResources converts protocol resources (CreateContainer's spec and
// UpdateContainer) to runtime-spec resources. Zero values mean unset.
func ToResources(r *pb.LinuxResources) *specs.LinuxResources {
	if r == nil {
		return nil
	}
	out := &specs.LinuxResources{
		Devices: toDeviceRules(r.Devices),
		Memory:  toMemory(r.Memory),
		CPU:     toCPU(r.CPU),
		BlockIO: toBlockIO(r.BlockIO),
		Network: toNetwork(r.Network),
	}
	if p := r.Pids; p != nil && p.Limit != 0 {
		l := p.Limit
		out.Pids = &specs.LinuxPids{Limit: &l}
	}
	for _, h := range r.HugepageLimits {
		if h == nil {
			continue
		}
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.Pagesize, Limit: h.Limit})
	}
	return out
}

func toDeviceRules(ds []*pb.LinuxDeviceCgroup) []specs.LinuxDeviceCgroup {
	var out []specs.LinuxDeviceCgroup
	for _, d := range ds {
		if d == nil {
			continue
		}
		sd := specs.LinuxDeviceCgroup{Allow: d.Allow, Type: d.Type, Access: d.Access}
		// -1 (and, on the wire, 0 for "all" rules with type "a") is a wildcard.
		if d.Major != -1 {
			m := d.Major
			sd.Major = &m
		}
		if d.Minor != -1 {
			m := d.Minor
			sd.Minor = &m
		}
		if d.Type == "a" || d.Type == "" {
			sd.Major, sd.Minor = nil, nil
		}
		out = append(out, sd)
	}
	return out
}

func toMemory(m *pb.LinuxMemory) *specs.LinuxMemory {
	if m == nil {
		return nil
	}
	sm := &specs.LinuxMemory{
		Limit:       nz64(m.Limit),
		Reservation: nz64(m.Reservation),
		Swap:        nz64(m.Swap),
		KernelTCP:   nz64(m.KernelTCP),
		Swappiness:  nzu64(m.Swappiness),
	}
	if m.DisableOOMKiller {
		t := true
		sm.DisableOOMKiller = &t
	}
	return sm
}

func toCPU(c *pb.LinuxCPU) *specs.LinuxCPU {
	if c == nil {
		return nil
	}
	return &specs.LinuxCPU{
		Shares:          nzu64(c.Shares),
		Quota:           nz64(c.Quota),
		Period:          nzu64(c.Period),
		RealtimeRuntime: nz64(c.RealtimeRuntime),
		RealtimePeriod:  nzu64(c.RealtimePeriod),
		Cpus:            c.Cpus,
		Mems:            c.Mems,
	}
}

func toBlockIO(b *pb.LinuxBlockIO) *specs.LinuxBlockIO {
	if b == nil {
		return nil
	}
	sb := &specs.LinuxBlockIO{Weight: nzWeight(b.Weight), LeafWeight: nzWeight(b.LeafWeight)}
	for _, d := range b.WeightDevice {
		if d == nil {
			continue
		}
		wd := specs.LinuxWeightDevice{Weight: nzWeight(d.Weight), LeafWeight: nzWeight(d.LeafWeight)}
		wd.Major, wd.Minor = d.Major, d.Minor
		sb.WeightDevice = append(sb.WeightDevice, wd)
	}
	sb.ThrottleReadBpsDevice = toThrottle(b.ThrottleReadBpsDevice)
	sb.ThrottleWriteBpsDevice = toThrottle(b.ThrottleWriteBpsDevice)
	sb.ThrottleReadIOPSDevice = toThrottle(b.ThrottleReadIOPSDevice)
	sb.ThrottleWriteIOPSDevice = toThrottle(b.ThrottleWriteIOPSDevice)
	return sb
}

func toNetwork(n *pb.LinuxNetwork) *specs.LinuxNetwork {
	if n == nil {
		return nil
	}
	sn := &specs.LinuxNetwork{}
	if n.ClassID != 0 {
		c := n.ClassID
		sn.ClassID = &c
	}
	for _, p := range n.Priorities {
		if p == nil {
			continue
		}
		sn.Priorities = append(sn.Priorities, specs.LinuxInterfacePriority{Name: p.Name, Priority: p.Priority})
	}
	return sn
}

func toThrottle(ds []*pb.LinuxThrottleDevice) []specs.LinuxThrottleDevice {
	var out []specs.LinuxThrottleDevice
	for _, d := range ds {
		if d == nil {
			continue
		}
		td := specs.LinuxThrottleDevice{Rate: d.Rate}
		td.Major, td.Minor = d.Major, d.Minor
		out = append(out, td)
	}
	return out
}

func nz64(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

func nzu64(v uint64) *uint64 {
	if v == 0 {
		return nil
	}
	return &v
}

// nzWeight converts a blkio weight; the protocol carries it in 32 bits.
func nzWeight(v uint32) *uint16 {
	if v == 0 {
		return nil
	}
	w := uint16(v)
	return &w
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
