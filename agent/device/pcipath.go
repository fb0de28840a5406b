// Package device locates hot-plugged devices in the guest: it resolves the
// PCI paths the runtime sends ("02/01": slot 02 on the root bus, then slot
// 01 behind the bridge at 02) through sysfs, waits for block, SCSI and VFIO
// devices with uevents bounded by the hotplug timeout, and rewrites a
// container's OCI device list with the guest's major/minor numbers.
package device

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
)

// ErrInvalid is wrapped by errors about malformed device descriptions; it
// is an errdefs invalid-argument error.
var ErrInvalid = fmt.Errorf("invalid device description: %w", errdefs.ErrInvalidArgument)

// SlotFn is a PCI device (slot) and function number on one bus.
type SlotFn struct {
	Slot uint8 // 0..31
	Fn   uint8 // 0..7
}

func (s SlotFn) String() string { return fmt.Sprintf("%02x.%x", s.Slot, s.Fn) }

// PCIPath is the chain of slots from the root bus to a device, each element
// but the last being a PCI-to-PCI bridge.
type PCIPath []SlotFn

// maxPCIDepth bounds a path; real topologies are a few bridges deep.
const maxPCIDepth = 16

func (p PCIPath) String() string {
	parts := make([]string, len(p))
	for i, s := range p {
		parts[i] = s.String()
	}
	return strings.Join(parts, "/")
}

// ParsePCIPath parses "SS[.F]/SS[.F]/..." with hex slot and function.
func ParsePCIPath(s string) (PCIPath, error) {
	if s == "" {
		return nil, fmt.Errorf("empty PCI path: %w", ErrInvalid)
	}
	parts := strings.Split(s, "/")
	if len(parts) > maxPCIDepth {
		return nil, fmt.Errorf("PCI path %q deeper than %d: %w", hostinput.Clip(s), maxPCIDepth, ErrInvalid)
	}
	p := make(PCIPath, 0, len(parts))
	for _, part := range parts {
		slot, fn, hasFn := strings.Cut(part, ".")
		sv, err := strconv.ParseUint(slot, 16, 8)
		if err != nil || slot == "" || len(slot) > 2 || sv > 31 {
			return nil, fmt.Errorf("PCI path %q: slot %q is not a hex number 00..1f: %w", hostinput.Clip(s), hostinput.Clip(slot), ErrInvalid)
		}
		var fv uint64
		if hasFn {
			fv, err = strconv.ParseUint(fn, 16, 8)
			if err != nil || len(fn) != 1 || fv > 7 {
				return nil, fmt.Errorf("PCI path %q: function %q is not 0..7: %w", hostinput.Clip(s), hostinput.Clip(fn), ErrInvalid)
			}
		}
		p = append(p, SlotFn{Slot: uint8(sv), Fn: uint8(fv)})
	}
	return p, nil
}

// DefaultRootBus is the PCI host bridge of a q35 or pc machine.
const DefaultRootBus = "pci0000:00"

// Sysfs resolves paths in a sysfs tree (normally /sys; a fake one in tests).
type Sysfs struct {
	Root string
}

func (s Sysfs) root() string {
	if s.Root == "" {
		return "/sys"
	}
	return s.Root
}

// PCIDevPath returns the sysfs device path of p, relative to the sysfs root
// in the form uevents carry as DEVPATH, e.g.
// "/devices/pci0000:00/0000:00:02.0/0000:01:01.0". Each bridge's secondary
// bus is read from its pci_bus directory, which must hold exactly one bus.
func (s Sysfs) PCIDevPath(rootBus string, p PCIPath) (string, error) {
	if len(p) == 0 {
		return "", fmt.Errorf("empty PCI path: %w", ErrInvalid)
	}
	if rootBus == "" {
		rootBus = DefaultRootBus
	}
	domain := strings.TrimPrefix(rootBus, "pci")
	if domain == rootBus || strings.ContainsAny(domain, "/.") {
		return "", fmt.Errorf("PCI root bus %q is not pciDDDD:BB: %w", rootBus, ErrInvalid)
	}
	bus := domain // "0000:00"
	rel := "/devices/" + rootBus
	for i, sf := range p {
		rel += "/" + bus + ":" + sf.String()
		if i == len(p)-1 {
			break
		}
		busDir := filepath.Join(s.root(), rel, "pci_bus")
		entries, err := os.ReadDir(busDir)
		if err != nil {
			return "", fmt.Errorf("PCI path %s: element %d (%s) is not a bridge with a secondary bus: %w", p, i, sf, err)
		}
		if len(entries) != 1 {
			return "", fmt.Errorf("PCI path %s: bridge %s has %d buses in %s, want exactly 1", p, rel, len(entries), busDir)
		}
		bus = entries[0].Name()
		if !validBusName(bus) {
			return "", fmt.Errorf("PCI path %s: unexpected bus name %q under %s", p, bus, busDir)
		}
	}
	return rel, nil
}

// validBusName accepts "DDDD:BB" (hex).
func validBusName(s string) bool {
	d, b, ok := strings.Cut(s, ":")
	if !ok || len(d) != 4 || len(b) != 2 {
		return false
	}
	_, err1 := strconv.ParseUint(d, 16, 16)
	_, err2 := strconv.ParseUint(b, 16, 8)
	return err1 == nil && err2 == nil
}
