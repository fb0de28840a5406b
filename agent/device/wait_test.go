package device

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandbox-guest/sandbox-guest/agent/uevent"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// fakeEvents delivers queued events to the first subscriber whose match
// accepts them, after the subscription exists.
type fakeEvents struct {
	queue []uevent.Event
	subs  int
}

func (f *fakeEvents) Subscribe(match func(uevent.Event) bool) (<-chan uevent.Event, func()) {
	f.subs++
	ch := make(chan uevent.Event, len(f.queue)+1)
	go func() {
		time.Sleep(10 * time.Millisecond)
		for _, ev := range f.queue {
			if match(ev) {
				ch <- ev
			}
		}
	}()
	return ch, func() {}
}

func TestBlockPCIByUevent(t *testing.T) {
	root := fakePCITree(t)
	ev := &fakeEvents{queue: []uevent.Event{
		// A disk on another slot must not match.
		{Action: "add", Subsystem: "block", DevName: "vdb", DevPath: "/devices/pci0000:00/0000:00:04.0/virtio2/block/vdb"},
		// A partition of the right disk must not match either.
		{Action: "add", Subsystem: "block", DevName: "vdc1", DevPath: "/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio3/block/vdc/vdc1"},
		{Action: "add", Subsystem: "block", DevName: "vdc", DevPath: "/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio3/block/vdc"},
	}}
	w := &Waiter{Events: ev, Sysfs: Sysfs{Root: root}, DevRoot: "/dev", Timeout: 2 * time.Second}
	node, err := w.BlockPCI(context.Background(), "02/01")
	if err != nil {
		t.Fatal(err)
	}
	if node != "/dev/vdc" {
		t.Fatalf("node = %s, want /dev/vdc", node)
	}
}

func TestBlockPCIAlreadyPresent(t *testing.T) {
	root := fakePCITree(t)
	if err := os.MkdirAll(filepath.Join(root, "devices/pci0000:00/0000:00:04.0/virtio0/block/vda"), 0o755); err != nil {
		t.Fatal(err)
	}
	w := &Waiter{Events: &fakeEvents{}, Sysfs: Sysfs{Root: root}, Timeout: time.Second}
	node, err := w.BlockPCI(context.Background(), "04")
	if err != nil || node != "/dev/vda" {
		t.Fatalf("node %q err %v", node, err)
	}
}

func TestWaitTimesOut(t *testing.T) {
	w := &Waiter{Events: &fakeEvents{}, Sysfs: Sysfs{Root: fakePCITree(t)}, Timeout: 50 * time.Millisecond}
	start := time.Now()
	_, err := w.BlockPCI(context.Background(), "02/01")
	if !errdefs.IsDeadlineExceeded(err) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("timeout not honoured")
	}
	if _, err := w.BlockPCI(context.Background(), "zz"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad PCI path: %v", err)
	}
}

func TestSCSIAndMMIO(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "class/scsi_host/host0"), 0o755)
	os.WriteFile(filepath.Join(root, "class/scsi_host/host0/scan"), nil, 0o644)
	ev := &fakeEvents{queue: []uevent.Event{
		{Action: "add", Subsystem: "block", DevName: "sda", DevPath: "/devices/pci0000:00/0000:00:05.0/virtio1/host0/target0:0:1/0:0:1:2/block/sda"},
		{Action: "add", Subsystem: "block", DevName: "vdb", DevPath: "/devices/virtio-mmio-cmdline/virtio-mmio.1/virtio1/block/vdb"},
	}}
	w := &Waiter{Events: ev, Sysfs: Sysfs{Root: root}, Timeout: time.Second}
	node, err := w.SCSI(context.Background(), "1:2")
	if err != nil || node != "/dev/sda" {
		t.Fatalf("scsi: %q %v", node, err)
	}
	scan, _ := os.ReadFile(filepath.Join(root, "class/scsi_host/host0/scan"))
	if string(scan) != "0 1 2" {
		t.Fatalf("scan written %q", scan)
	}
	node, err = w.BlockMMIO(context.Background(), "/dev/vdb")
	if err != nil || node != "/dev/vdb" {
		t.Fatalf("mmio: %q %v", node, err)
	}
	for _, bad := range []string{"1", "a:b", "1:2:3"} {
		if _, err := w.SCSI(context.Background(), bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("SCSI(%q) = %v", bad, err)
		}
	}
	if _, err := w.BlockMMIO(context.Background(), "/dev/../etc/passwd"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("mmio escape: %v", err)
	}
}

func ptr(v int64) *int64 { return &v }

func TestResolverApply(t *testing.T) {
	root := fakePCITree(t)
	os.MkdirAll(filepath.Join(root, "devices/pci0000:00/0000:00:04.0/virtio0/block/vda"), 0o755)
	os.MkdirAll(filepath.Join(root, "class/block/vdb"), 0o755)
	w := &Waiter{Events: &fakeEvents{}, Sysfs: Sysfs{Root: root}, DevRoot: "/dev", Timeout: time.Second}
	nodes := map[string]NodeInfo{
		"/dev/vda": {Type: "b", Major: 254, Minor: 0},
		// Its guest numbers equal the first device's host numbers: must not
		// be rewritten twice.
		"/dev/vdb": {Type: "b", Major: 8, Minor: 0},
	}
	r := &Resolver{Waiter: w, StatNode: func(p string) (NodeInfo, error) {
		if n, ok := nodes[p]; ok {
			return n, nil
		}
		return NodeInfo{}, os.ErrNotExist
	}}
	spec := &specs.Spec{Linux: &specs.Linux{
		Devices: []specs.LinuxDevice{
			{Path: "/dev/xda", Type: "b", Major: 8, Minor: 0},
			{Path: "/dev/xdb", Type: "b", Major: 8, Minor: 16},
		},
		Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "b", Major: ptr(8), Minor: ptr(0), Access: "rw"},
		}},
	}}
	devs := []*pb.Device{
		{Type: "blk", Id: "04", ContainerPath: "/dev/xda"},
		{Type: "mmioblk", VmPath: "/dev/vdb", ContainerPath: "/dev/xdb"},
	}
	if err := r.Apply(context.Background(), devs, spec); err != nil {
		t.Fatal(err)
	}
	d := spec.Linux.Devices
	if d[0].Major != 254 || d[0].Minor != 0 || d[1].Major != 8 || d[1].Minor != 0 {
		t.Fatalf("devices not rewritten: %+v", d)
	}
	rules := spec.Linux.Resources.Devices
	if len(rules) != 3 {
		t.Fatalf("want 3 rules, got %+v", rules)
	}
	if *rules[1].Major != 254 || *rules[1].Minor != 0 || rules[1].Access != "rw" {
		t.Fatalf("host rule not rewritten to guest numbers: %+v", rules[1])
	}
	if !rules[2].Allow || *rules[2].Major != 8 || *rules[2].Minor != 0 || rules[2].Type != "b" {
		t.Fatalf("missing allow rule for the second device: %+v", rules[2])
	}
}

func TestResolverRejectsBeforeWaiting(t *testing.T) {
	ev := &fakeEvents{}
	r := &Resolver{Waiter: &Waiter{Events: ev, Timeout: time.Hour}}
	spec := &specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/x", Type: "b"}}}}
	cases := [][]*pb.Device{
		{{Type: "nvdimm", ContainerPath: "/dev/x"}},
		{{Type: "blk", Id: "02", ContainerPath: "relative"}},
		{{Type: "blk", Id: "02", ContainerPath: "/dev/not-in-spec"}},
		{nil},
	}
	for i, c := range cases {
		if err := r.Apply(context.Background(), c, spec); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("case %d: %v, want invalid argument", i, err)
		}
	}
	if ev.subs != 0 {
		t.Fatal("waited for a device of an invalid request")
	}
}

func TestVFIOResolve(t *testing.T) {
	root := fakePCITree(t)
	dev := filepath.Join(root, "devices/pci0000:00/0000:00:02.0/0000:01:01.0")
	os.MkdirAll(filepath.Join(root, "kernel/iommu_groups/7"), 0o755)
	os.Symlink("../../../../kernel/iommu_groups/7", filepath.Join(dev, "iommu_group"))
	os.MkdirAll(filepath.Join(root, "bus/pci"), 0o755)
	os.WriteFile(filepath.Join(root, "bus/pci/drivers_probe"), nil, 0o644)
	devRoot := t.TempDir()
	os.MkdirAll(filepath.Join(devRoot, "vfio"), 0o755)
	os.WriteFile(filepath.Join(devRoot, "vfio/7"), nil, 0o644)
	w := &Waiter{Events: &fakeEvents{}, Sysfs: Sysfs{Root: root}, DevRoot: devRoot, Timeout: time.Second}
	r := &Resolver{Waiter: w, StatNode: func(p string) (NodeInfo, error) {
		if p != filepath.Join(devRoot, "vfio/7") {
			t.Fatalf("stat of %s", p)
		}
		return NodeInfo{Type: "c", Major: 243, Minor: 1}, nil
	}}
	spec := &specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/vfio/42", Type: "c", Major: 240, Minor: 0}}}}
	d := &pb.Device{Type: "vfio-pci", ContainerPath: "/dev/vfio/42", Options: []string{"0000:3b:00.0=02/01"}}
	if err := r.Apply(context.Background(), []*pb.Device{d}, spec); err != nil {
		t.Fatal(err)
	}
	got := spec.Linux.Devices[0]
	if got.Path != "/dev/vfio/7" || got.Major != 243 || got.Minor != 1 {
		t.Fatalf("vfio device not rewritten: %+v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dev, "driver_override")); string(b) != "vfio-pci" {
		t.Fatalf("driver_override %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "bus/pci/drivers_probe")); string(b) != "0000:01:01.0" {
		t.Fatalf("drivers_probe %q", b)
	}
	// Guest-kernel mode leaves the spec alone.
	spec2 := &specs.Spec{Linux: &specs.Linux{}}
	gk := &pb.Device{Type: "vfio-pci-gk", Options: []string{"0000:3b:00.0=02/01"}}
	if err := r.Apply(context.Background(), []*pb.Device{gk}, spec2); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{nil, {"nobdf"}, {"a=b=c"}} {
		d := &pb.Device{Type: "vfio-pci", ContainerPath: "/dev/vfio/42", Options: bad}
		if err := r.Apply(context.Background(), []*pb.Device{d}, spec); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("options %v: %v", bad, err)
		}
	}
}
