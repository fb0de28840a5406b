package device

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sandbox-guest/sandbox-guest/agent/uevent"
)

func netEvent(action, devPath, iface string) uevent.Event {
	env := map[string]string{"ACTION": action, "DEVPATH": devPath, "SUBSYSTEM": "net"}
	if iface != "" {
		env["INTERFACE"] = iface
	}
	return uevent.Event{Action: action, DevPath: devPath, Subsystem: "net", Env: env}
}

// The NIC arrives after the request: its "add" uevent ends the wait; other
// devices' events, other subsystems and other actions do not.
func TestNetPCIByUevent(t *testing.T) {
	root := fakePCITree(t)
	nicDir := "/devices/pci0000:00/0000:00:02.0/0000:01:01.0"
	ev := &fakeEvents{queue: []uevent.Event{
		netEvent("add", "/devices/pci0000:00/0000:00:04.0/virtio1/net/eth1", "eth1"),       // another slot
		netEvent("add", "/devices/pci0000:00/0000:00:02.0/0000:01:01.00/net/eth9", "eth9"), // prefix, not a child
		netEvent("remove", nicDir+"/virtio2/net/eth2", "eth2"),
		{Action: "add", Subsystem: "virtio", DevPath: nicDir + "/virtio2", Env: map[string]string{}},
		netEvent("add", nicDir+"/virtio2/net/eth2", "eth2"),
	}}
	// The interface shows in sysfs when its uevent is sent.
	w := &Waiter{Events: &sysfsOnEvent{fakeEvents: ev, root: root}, Sysfs: Sysfs{Root: root}, Timeout: 2 * time.Second}
	name, err := w.NetPCI(context.Background(), "02/01")
	if err != nil || name != "eth2" {
		t.Fatalf("NetPCI = %q, %v; want eth2", name, err)
	}
}

// sysfsOnEvent creates the first matched event's device in the fake sysfs
// before delivering it, as the kernel does; an event matched wrongly thus
// shows as a wrong (or no) interface name.
type sysfsOnEvent struct {
	*fakeEvents
	root string
}

func (s *sysfsOnEvent) Subscribe(match func(uevent.Event) bool) (<-chan uevent.Event, func()) {
	ch, cancel := s.fakeEvents.Subscribe(match)
	out := make(chan uevent.Event, 1)
	go func() {
		for ev := range ch {
			_ = os.MkdirAll(filepath.Join(s.root, ev.DevPath), 0o755)
			out <- ev
			return
		}
	}()
	return out, cancel
}

// A NIC that is already there (cold-plugged, or its event came before the
// request) is found in sysfs at once, with or without a virtio child.
func TestNetPCIAlreadyPresent(t *testing.T) {
	root := fakePCITree(t)
	for path, dir := range map[string]string{
		"04":    "devices/pci0000:00/0000:00:04.0/virtio0/net/eth0",
		"02/01": "devices/pci0000:00/0000:00:02.0/0000:01:01.0/net/ens1",
	} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		w := &Waiter{Events: &fakeEvents{}, Sysfs: Sysfs{Root: root}, Timeout: time.Second}
		name, err := w.NetPCI(context.Background(), path)
		if err != nil || name != filepath.Base(dir) {
			t.Errorf("NetPCI(%s) = %q, %v; want %s", path, name, err, filepath.Base(dir))
		}
	}
}

func TestNetPCIErrors(t *testing.T) {
	root := fakePCITree(t)
	// The PCI function exists but has no network interface: time out.
	w := &Waiter{Events: &fakeEvents{}, Sysfs: Sysfs{Root: root}, Timeout: 50 * time.Millisecond}
	start := time.Now()
	if _, err := w.NetPCI(context.Background(), "02/01"); !errdefs.IsDeadlineExceeded(err) {
		t.Errorf("no interface: %v, want deadline exceeded", err)
	}
	if time.Since(start) > time.Second {
		t.Error("timeout not honoured")
	}
	for _, bad := range []string{"", "zz", "02/01/../03", "pci0000:00/02"} {
		if _, err := w.NetPCI(context.Background(), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v, want invalid", bad, err)
		}
	}
	// The caller's context ends the wait too.
	w.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := w.NetPCI(ctx, "04"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled: %v", err)
	}
}
