package container

import (
	"os"
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
