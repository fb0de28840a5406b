package device

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/agent/uevent"
)

// Events is the part of uevent.Listener the waiters need.
type Events interface {
	Subscribe(match func(uevent.Event) bool) (events <-chan uevent.Event, cancel func())
}

// Waiter waits for hot-plugged devices to appear in the guest.
type Waiter struct {
	Events Events
	Sysfs  Sysfs
	// DevRoot is where device nodes live (normally /dev).
	DevRoot string
	// Timeout bounds each wait (agent.hotplug_timeout).
	Timeout time.Duration
}

// DefaultTimeout is used when Waiter.Timeout is zero.
const DefaultTimeout = 3 * time.Second

func (w *Waiter) devRoot() string {
	if w.DevRoot == "" {
		return "/dev"
	}
	return w.DevRoot
}

// wait subscribes to uevents, then checks whether the device is already
// there (so an event that came before the subscription is not missed), then
// waits for a matching event. It returns the matched DEVNAME (or "").
func (w *Waiter) wait(ctx context.Context, what string, match func(uevent.Event) bool, present func() (string, bool)) (string, error) {
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var (
		ch     <-chan uevent.Event
		cancel = func() {}
	)
	if w.Events != nil {
		ch, cancel = w.Events.Subscribe(match)
	}
	defer cancel()
	if name, ok := present(); ok {
		return name, nil
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				// The listener died: fall back to one last look in sysfs.
				if name, ok := present(); ok {
					return name, nil
				}
				return "", fmt.Errorf("wait for %s: uevent listener unavailable: %w", what, errdefs.ErrUnavailable)
			}
			if ev.Action == "add" || ev.Action == "bind" || ev.Action == "change" {
				return ev.DevName, nil
			}
		case <-timer.C:
			if name, ok := present(); ok {
				return name, nil
			}
			return "", fmt.Errorf("timed out after %s waiting for %s: %w", timeout, what, context.DeadlineExceeded)
		case <-ctx.Done():
			return "", fmt.Errorf("wait for %s: %w", what, ctx.Err())
		}
	}
}

// rescanPCI asks the kernel to look for hidden PCI devices; best effort,
// since a guest without hotplug bridges has nothing to rescan.
func (w *Waiter) rescanPCI() {
	_ = os.WriteFile(filepath.Join(w.Sysfs.root(), "bus/pci/rescan"), []byte("1"), 0)
}

// pciDevPath parses pciPath, asks the kernel to rescan the PCI bus (a
// hot-plugged function may not be enumerated yet) and resolves the path to
// its sysfs device path. what names the device in errors.
func (w *Waiter) pciDevPath(pciPath, what string) (PCIPath, string, error) {
	p, err := ParsePCIPath(pciPath)
	if err != nil {
		return nil, "", err
	}
	w.rescanPCI()
	devPath, err := w.Sysfs.PCIDevPath(DefaultRootBus, p)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", what, p, err)
	}
	return p, devPath, nil
}

// BlockPCI waits for the virtio-blk disk at PCI path pciPath and returns
// its device node (e.g. /dev/vda).
func (w *Waiter) BlockPCI(ctx context.Context, pciPath string) (string, error) {
	p, devPath, err := w.pciDevPath(pciPath, "block device at PCI path")
	if err != nil {
		return "", err
	}
	re := regexp.MustCompile("^" + regexp.QuoteMeta(devPath) + "/virtio[0-9]+/block/([^/]+)$")
	match := func(ev uevent.Event) bool {
		return ev.Subsystem == "block" && ev.DevName != "" && re.MatchString(ev.DevPath)
	}
	present := func() (string, bool) {
		m, _ := filepath.Glob(filepath.Join(w.Sysfs.root(), devPath, "virtio*", "block", "*"))
		if len(m) == 1 {
			return filepath.Base(m[0]), true
		}
		return "", false
	}
	name, err := w.wait(ctx, "block device at PCI path "+p.String(), match, present)
	if err != nil {
		return "", err
	}
	return w.node(name)
}

// BlockMMIO waits for the virtio-mmio disk that the runtime names by its
// guest path (vmPath, e.g. /dev/vda).
func (w *Waiter) BlockMMIO(ctx context.Context, vmPath string) (string, error) {
	name, ok := strings.CutPrefix(vmPath, "/dev/")
	if !ok || !simpleName(name) {
		return "", fmt.Errorf("mmio block device path %q is not /dev/NAME: %w", hostinput.Clip(vmPath), ErrInvalid)
	}
	match := func(ev uevent.Event) bool {
		return ev.Subsystem == "block" && ev.DevName == name && strings.HasSuffix(ev.DevPath, "/block/"+name)
	}
	present := func() (string, bool) {
		_, err := os.Stat(filepath.Join(w.Sysfs.root(), "class/block", name))
		return name, err == nil
	}
	got, err := w.wait(ctx, "mmio block device "+vmPath, match, present)
	if err != nil {
		return "", err
	}
	return w.node(got)
}

// SCSI waits for the disk at SCSI address "ID:LUN" (channel 0, the only
// controller) after asking every SCSI host to scan for it.
func (w *Waiter) SCSI(ctx context.Context, addr string) (string, error) {
	id, lun, ok := strings.Cut(addr, ":")
	if !ok || !decimal(id) || !decimal(lun) {
		return "", fmt.Errorf("SCSI address %q is not ID:LUN: %w", hostinput.Clip(addr), ErrInvalid)
	}
	hosts, _ := filepath.Glob(filepath.Join(w.Sysfs.root(), "class/scsi_host/host*/scan"))
	for _, scan := range hosts {
		_ = os.WriteFile(scan, []byte("0 "+id+" "+lun), 0)
	}
	search := "/0:0:" + id + ":" + lun + "/block/"
	match := func(ev uevent.Event) bool {
		return ev.Subsystem == "block" && ev.DevName != "" && strings.Contains(ev.DevPath, search)
	}
	present := func() (string, bool) {
		m, _ := filepath.Glob(filepath.Join(w.Sysfs.root(), "bus/scsi/devices", "*:0:"+id+":"+lun, "block", "*"))
		if len(m) == 1 {
			return filepath.Base(m[0]), true
		}
		return "", false
	}
	name, err := w.wait(ctx, "SCSI disk "+addr, match, present)
	if err != nil {
		return "", err
	}
	return w.node(name)
}

// PCIDevice waits for the PCI function at pciPath to appear and returns its
// sysfs directory (under Sysfs.Root).
func (w *Waiter) PCIDevice(ctx context.Context, pciPath string) (string, error) {
	p, devPath, err := w.pciDevPath(pciPath, "PCI device")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(w.Sysfs.root(), devPath)
	match := func(ev uevent.Event) bool { return ev.Subsystem == "pci" && ev.DevPath == devPath }
	present := func() (string, bool) {
		_, err := os.Stat(dir)
		return "", err == nil
	}
	if _, err := w.wait(ctx, "PCI device "+p.String(), match, present); err != nil {
		return "", err
	}
	return dir, nil
}

// iommuGroup reads the IOMMU group number of a PCI function's sysfs
// directory.
func iommuGroup(dir string) (string, error) {
	link, err := os.Readlink(filepath.Join(dir, "iommu_group"))
	if err != nil {
		return "", fmt.Errorf("PCI device %s has no IOMMU group: %w", filepath.Base(dir), err)
	}
	group := filepath.Base(link)
	if !decimal(group) {
		return "", fmt.Errorf("PCI device %s: unexpected IOMMU group link %q", filepath.Base(dir), link)
	}
	return group, nil
}

// VFIONode waits for the VFIO group node of an IOMMU group (/dev/vfio/N).
func (w *Waiter) VFIONode(ctx context.Context, group string) (string, error) {
	if !decimal(group) {
		return "", fmt.Errorf("IOMMU group %q is not a number: %w", hostinput.Clip(group), ErrInvalid)
	}
	node := filepath.Join(w.devRoot(), "vfio", group)
	devPath := "/devices/virtual/vfio/" + group
	match := func(ev uevent.Event) bool { return ev.DevPath == devPath }
	present := func() (string, bool) {
		_, err := os.Stat(node)
		return "", err == nil
	}
	if _, err := w.wait(ctx, "VFIO group node "+node, match, present); err != nil {
		return "", err
	}
	return node, nil
}

func (w *Waiter) node(devName string) (string, error) {
	if devName == "" || strings.Contains(devName, "..") || strings.HasPrefix(devName, "/") {
		return "", fmt.Errorf("device name %q from the kernel is not usable: %w", devName, errors.ErrUnsupported)
	}
	return filepath.Join(w.devRoot(), devName), nil
}

func simpleName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return s != "." && s != ".."
}

func decimal(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
