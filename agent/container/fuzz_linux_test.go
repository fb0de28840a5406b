package container

import (
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/ocipb"
)

// seedSpec is a spec as the Kata runtime sends it, in the protocol's form.
func seedSpec(root string) *pb.Spec {
	limit, period, quota := int64(64<<20), uint64(100000), int64(50000)
	return ocipb.FromSpec(&specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: root, Readonly: true},
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"PATH=/bin"},
			Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}},
			Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}}},
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, {Destination: "/dev/shm", Type: "bind", Source: "/run/x", Options: []string{"rbind"}}},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}},
			Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit},
				CPU:     &specs.LinuxCPU{Period: &period, Quota: &quota},
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			Sysctl:        map[string]string{"net.ipv4.ip_forward": "1"},
			MaskedPaths:   []string{"/proc/kcore"},
			ReadonlyPaths: []string{"/proc/sys"},
			Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86_64},
				Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}},
		},
	})
}

// FuzzLibcontainerConfig feeds arbitrary protobuf bytes through the whole
// conversion a CreateContainer spec takes before anything runs: the
// protocol's spec to runtime-spec (ocipb.ToSpec), then to libcontainer's
// validated configuration. Properties: no panic, and every refusal is
// InvalidArgument (the host's mistake), never an unclassed failure.
func FuzzLibcontainerConfig(f *testing.F) {
	root := f.TempDir()
	seed, err := proto.Marshal(seedSpec(root))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var p pb.Spec
		if proto.Unmarshal(data, &p) != nil {
			return
		}
		spec, err := ocipb.ToSpec(&p)
		if err != nil {
			return
		}
		if spec.Process == nil {
			return // refused before conversion (sandbox.validateSpec, Create)
		}
		if spec.Root == nil {
			spec.Root = &specs.Root{}
		}
		if spec.Root.Path != root {
			// The agent checks the rootfs exists first; most mutations
			// of it only lose the rest of the spec's coverage.
			if _, err := os.Stat(spec.Root.Path); err != nil {
				spec.Root.Path = root
			}
		}
		if spec.Linux == nil {
			spec.Linux = &specs.Linux{}
		}
		spec.Linux.CgroupsPath = "/sandbox-guest-fuzz/c"
		cfg, err := libcontainerConfig("c", spec)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("refusal is not InvalidArgument: %v", err)
			}
			return
		}
		if cfg == nil || cfg.Cgroups == nil {
			t.Fatal("accepted spec without a configuration")
		}
	})
}

// FuzzLibcontainerConfigFields varies the fields of a realistic spec that
// libcontainer's conversion and validation read (mounts, namespaces,
// sysctls, seccomp, rlimits, devices, cgroup values) directly, which
// mutating the encoded spec rarely reaches. Same properties as
// FuzzLibcontainerConfig.
func FuzzLibcontainerConfigFields(f *testing.F) {
	root := f.TempDir()
	f.Add("/dev/shm", "tmpfs", "size=65536k", "pid", "", "net.ipv4.ip_forward", "1", "SCMP_ACT_ERRNO", "RLIMIT_NOFILE", "c", int64(1), int64(3), "0-1", int64(64<<20), "rslave")
	f.Add("relative", "bind", "rbind,ro", "network", "/proc/1/ns/net", "kernel.panic", "x", "SCMP_ACT_BOGUS", "RLIMIT_BOGUS", "z", int64(-1), int64(1<<40), "x-y", int64(-5), "bogus")
	f.Add("/proc", "proc", "", "user", "/nonexistent", "fs.mqueue.msg_max", "", "SCMP_ACT_KILL_PROCESS", "RLIMIT_CORE", "b", int64(0), int64(0), "", int64(1), "")
	f.Fuzz(func(t *testing.T, mountDst, mountType, mountOpt, nsType, nsPath, sysctlKey, sysctlVal, seccompAct, rlimitType, devType string,
		major, minor int64, cpus string, memLimit int64, propagation string) {
		mode := os.FileMode(0o666)
		spec := &specs.Spec{
			Version: specs.Version,
			Root:    &specs.Root{Path: root},
			Process: &specs.Process{Args: []string{"sh"}, Cwd: "/",
				Rlimits: []specs.POSIXRlimit{{Type: rlimitType, Hard: 10, Soft: 10}}},
			Mounts: []specs.Mount{{Destination: mountDst, Type: mountType, Source: mountType, Options: strings.Split(mountOpt, ",")}},
			Linux: &specs.Linux{
				Namespaces:        []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.LinuxNamespaceType(nsType), Path: nsPath}},
				Sysctl:            map[string]string{sysctlKey: sysctlVal},
				Seccomp:           &specs.LinuxSeccomp{DefaultAction: specs.LinuxSeccompAction(seccompAct), Architectures: []specs.Arch{specs.ArchX86_64}},
				Devices:           []specs.LinuxDevice{{Path: "/dev/fuzz", Type: devType, Major: major, Minor: minor, FileMode: &mode}},
				Resources:         &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: cpus}, Memory: &specs.LinuxMemory{Limit: &memLimit}},
				RootfsPropagation: propagation,
				CgroupsPath:       "/sandbox-guest-fuzz/c",
			},
		}
		// Through the protocol's form, as the agent receives it.
		spec, err := ocipb.ToSpec(ocipb.FromSpec(spec))
		if err != nil {
			return
		}
		spec.Linux.CgroupsPath = "/sandbox-guest-fuzz/c"
		if _, err := libcontainerConfig("c", spec); err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("refusal is not InvalidArgument: %v", err)
		}
	})
}
