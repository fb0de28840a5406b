package ocipb

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

func ptr[T any](v T) *T { return &v }

func fullSpec() *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: "h",
		Root:     &specs.Root{Path: "/run/kata-containers/shared/containers/c/rootfs", Readonly: true},
		Process: &specs.Process{
			Terminal: true, ConsoleSize: &specs.Box{Height: 24, Width: 80},
			User: specs.User{UID: 1, GID: 2, AdditionalGids: []uint32{3}, Username: "u"},
			Args: []string{"sh", "-c", "true"}, Env: []string{"A=b"}, Cwd: "/w",
			Capabilities:    &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"}},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 5}},
			NoNewPrivileges: true, OOMScoreAdj: ptr(-100),
		},
		Mounts:      []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid"}}},
		Annotations: map[string]string{"k": "v"},
		Linux: &specs.Linux{
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 10}},
			Sysctl:      map[string]string{"net.ipv4.ip_forward": "1"},
			Resources: &specs.LinuxResources{
				Devices:        []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Major: ptr(int64(1)), Minor: ptr(int64(3)), Access: "rw"}},
				Memory:         &specs.LinuxMemory{Limit: ptr(int64(32 << 20)), Swap: ptr(int64(64 << 20)), Swappiness: ptr(uint64(10)), DisableOOMKiller: ptr(true)},
				CPU:            &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(50000)), Period: ptr(uint64(100000)), Cpus: "0-1"},
				Pids:           &specs.LinuxPids{Limit: ptr(int64(100))},
				HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}},
			},
			CgroupsPath: "/kata/c",
			Namespaces:  []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.UTSNamespace, Path: "/proc/1/ns/uts"}},
			Devices:     []specs.LinuxDevice{{Path: "/dev/vda", Type: "b", Major: 254, Minor: 0, FileMode: ptr(os.FileMode(0o660)), UID: ptr(uint32(0)), GID: ptr(uint32(6))}},
			Seccomp: &specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86_64},
				Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(1)),
					Args: []specs.LinuxSeccompArg{{Index: 1, Value: 2, Op: specs.OpEqualTo}}}},
			},
			RootfsPropagation: "rslave",
			MaskedPaths:       []string{"/proc/kcore"},
			ReadonlyPaths:     []string{"/proc/sys"},
		},
	}
}

// TestRoundTrip: a spec survives FromSpec then ToSpec unchanged, so what
// a host client sends is what libcontainer receives.
func TestRoundTrip(t *testing.T) {
	want := fullSpec()
	got, err := ToSpec(FromSpec(want))
	if err != nil {
		t.Fatal(err)
	}
	wj, _ := json.MarshalIndent(want, "", " ")
	gj, _ := json.MarshalIndent(got, "", " ")
	if string(wj) != string(gj) {
		t.Fatalf("round trip changed the spec:\nwant %s\ngot  %s", wj, gj)
	}
}

func TestZeroMeansUnset(t *testing.T) {
	r := ToResources(&pb.LinuxResources{Memory: &pb.LinuxMemory{}, CPU: &pb.LinuxCPU{}, Pids: &pb.LinuxPids{}})
	if r.Memory.Limit != nil || r.CPU.Shares != nil || r.CPU.Quota != nil || r.Pids != nil {
		t.Fatalf("zero fields became values: %+v %+v %+v", r.Memory, r.CPU, r.Pids)
	}
}

func TestWildcardDeviceRule(t *testing.T) {
	r := ToResources(&pb.LinuxResources{Devices: []*pb.LinuxDeviceCgroup{
		{Allow: false, Type: "a", Major: 0, Minor: 0, Access: "rwm"},
		{Allow: true, Type: "c", Major: -1, Minor: -1, Access: "m"},
		{Allow: true, Type: "b", Major: 8, Minor: 0, Access: "r"},
	}})
	d := r.Devices
	if d[0].Major != nil || d[0].Minor != nil {
		t.Errorf("type a rule kept numbers: %+v", d[0])
	}
	if d[1].Major != nil || d[1].Minor != nil {
		t.Errorf("-1 not a wildcard: %+v", d[1])
	}
	if d[2].Major == nil || *d[2].Major != 8 || d[2].Minor == nil || *d[2].Minor != 0 {
		t.Errorf("explicit 8:0 lost: %+v", d[2])
	}
}

func TestNilAndSparse(t *testing.T) {
	if _, err := ToSpec(nil); err == nil {
		t.Fatal("nil spec accepted")
	}
	s, err := ToSpec(&pb.Spec{Mounts: []*pb.Mount{nil}, Linux: &pb.Linux{Namespaces: []*pb.LinuxNamespace{nil}}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Process != nil || s.Root != nil || len(s.Mounts) != 0 || len(s.Linux.Namespaces) != 0 {
		t.Fatalf("sparse spec grew fields: %+v", s)
	}
	if s.Version != specs.Version {
		t.Fatalf("version %q, want default %q", s.Version, specs.Version)
	}
	if !reflect.DeepEqual(ToProcess(nil), (*specs.Process)(nil)) {
		t.Fatal("nil process converted")
	}
}

// Block I/O weights, throttles and network priorities convert; zero
// weights stay unset, -1 device numbers are wildcards.
func TestToResourcesBlockIONetwork(t *testing.T) {
	got := ToResources(&pb.LinuxResources{
		BlockIO: &pb.LinuxBlockIO{
			Weight:                  500,
			WeightDevice:            []*pb.LinuxWeightDevice{nil, {Major: 8, Minor: 0, LeafWeight: 300}},
			ThrottleReadBpsDevice:   []*pb.LinuxThrottleDevice{{Major: 8, Minor: 16, Rate: 1 << 20}},
			ThrottleWriteIOPSDevice: []*pb.LinuxThrottleDevice{{Major: 8, Minor: 32, Rate: 100}},
		},
		Network: &pb.LinuxNetwork{ClassID: 0x100001, Priorities: []*pb.LinuxInterfacePriority{{Name: "eth0", Priority: 5}}},
		Devices: []*pb.LinuxDeviceCgroup{{Allow: true, Type: "b", Major: 8, Minor: -1, Access: "r"}},
	})
	want := &specs.LinuxResources{
		BlockIO: &specs.LinuxBlockIO{
			Weight: ptr(uint16(500)),
			WeightDevice: []specs.LinuxWeightDevice{
				{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, LeafWeight: ptr(uint16(300))},
			},
			ThrottleReadBpsDevice:   []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 16}, Rate: 1 << 20}},
			ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 32}, Rate: 100}},
		},
		Network: &specs.LinuxNetwork{ClassID: ptr(uint32(0x100001)), Priorities: []specs.LinuxInterfacePriority{{Name: "eth0", Priority: 5}}},
		Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "b", Major: ptr(int64(8)), Access: "r"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
