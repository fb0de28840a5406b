package device

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/sandbox-guest/sandbox-guest/agent/uevent"
)

// NetPCI waits for the network interface of the NIC at PCI path pciPath
// (Interface.devicePath, e.g. "02/01") and returns its current name. The
// runtime sends UpdateInterface right after hot-plugging the NIC, so the
// interface may not exist yet; like block devices, it is awaited through
// uevents, bounded by the hot-plug timeout.
func (w *Waiter) NetPCI(ctx context.Context, pciPath string) (string, error) {
	p, devPath, err := w.pciDevPath(pciPath, "network device at PCI path")
	if err != nil {
		return "", err
	}
	// virtio-net puts the interface under a virtio child
	// (.../0000:00:05.0/virtio2/net/eth0), other drivers directly
	// (.../0000:01:00.0/net/ens1).
	match := func(ev uevent.Event) bool {
		return ev.Action == "add" && ev.Subsystem == "net" && ev.Env["INTERFACE"] != "" &&
			strings.HasPrefix(ev.DevPath, devPath+"/") && strings.Contains(ev.DevPath[len(devPath):], "/net/")
	}
	present := func() (string, bool) {
		dir := filepath.Join(w.Sysfs.root(), devPath)
		for _, pattern := range []string{"net/*", "*/net/*"} {
			if m, _ := filepath.Glob(filepath.Join(dir, pattern)); len(m) > 0 {
				return filepath.Base(m[0]), true
			}
		}
		return "", false
	}
	if _, err := w.wait(ctx, "network device at PCI path "+p.String(), match, present); err != nil {
		return "", err
	}
	name, _ := present()
	return name, nil
}
