package device

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// Device types the runtime sends in Device.type.
const (
	TypeBlk      = "blk"
	TypeMMIOBlk  = "mmioblk"
	TypeSCSI     = "scsi"
	TypeVFIOPCI  = "vfio-pci"
	TypeVFIOGK   = "vfio-pci-gk"
	TypeVFIOMode = "vfio"
)

// deviceType is everything the resolver knows about one Device.type. The
// types table below is the one list of them: validation, resolution and
// GetGuestDetails' device_handlers (Types) all read it.
type deviceType struct {
	name string
	// vfio: options list the PCI functions as HOST_BDF=GUEST_PCI_PATH.
	vfio bool
	// guestDriver: the functions stay with their guest drivers and the
	// container gets no node (no container_path, nothing in the spec).
	guestDriver bool
	// resolve waits for the device and returns its guest node ("" when
	// there is none).
	resolve func(r *Resolver, ctx context.Context, typ *deviceType, d *pb.Device) (string, error)
}

var types = []deviceType{
	{name: TypeBlk, resolve: func(r *Resolver, ctx context.Context, _ *deviceType, d *pb.Device) (string, error) {
		if d.Id == "" && d.VmPath != "" {
			return r.Waiter.BlockMMIO(ctx, d.VmPath)
		}
		return r.Waiter.BlockPCI(ctx, d.Id)
	}},
	{name: TypeMMIOBlk, resolve: func(r *Resolver, ctx context.Context, _ *deviceType, d *pb.Device) (string, error) {
		return r.Waiter.BlockMMIO(ctx, d.VmPath)
	}},
	{name: TypeSCSI, resolve: func(r *Resolver, ctx context.Context, _ *deviceType, d *pb.Device) (string, error) {
		return r.Waiter.SCSI(ctx, d.Id)
	}},
	{name: TypeVFIOPCI, vfio: true, resolve: (*Resolver).resolveVFIO},
	{name: TypeVFIOMode, vfio: true, resolve: (*Resolver).resolveVFIO},
	{name: TypeVFIOGK, vfio: true, guestDriver: true, resolve: (*Resolver).resolveVFIO},
}

func lookupType(name string) (*deviceType, bool) {
	for i := range types {
		if types[i].name == name {
			return &types[i], true
		}
	}
	return nil, false
}

// Types lists the Device.type values Apply handles (for GetGuestDetails'
// device_handlers).
func Types() []string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = t.name
	}
	return names
}

// NodeInfo describes a device node.
type NodeInfo struct {
	Type         string // "b" or "c"
	Major, Minor int64
}

// Resolver waits for the devices of a CreateContainer request and rewrites
// the container's spec to the guest's device numbers. It implements the
// DeviceResolver interface of the sandbox package.
type Resolver struct {
	Waiter *Waiter
	// StatNode reads a device node's type and numbers; defaults to stat(2).
	StatNode func(path string) (NodeInfo, error)
}

type update struct {
	typ              string
	hostMaj, hostMin int64
	guest            NodeInfo
	origPath         string
	guestPath        string
}

// Apply resolves every device, then rewrites spec.Linux.Devices (matched by
// container_path) and the device cgroup rules that named the host numbers.
// Nothing in spec changes unless every device resolved.
func (r *Resolver) Apply(ctx context.Context, devices []*pb.Device, spec *specs.Spec) error {
	if len(devices) == 0 {
		return nil
	}
	if spec == nil {
		return fmt.Errorf("devices given without an OCI spec: %w", errdefs.ErrInvalidArgument)
	}
	// Validate everything before waiting for anything.
	for i, d := range devices {
		if d == nil {
			return fmt.Errorf("device %d is empty: %w", i, errdefs.ErrInvalidArgument)
		}
		typ, ok := lookupType(d.Type)
		if !ok {
			return fmt.Errorf("device %d: unsupported device type %q: %w", i, hostinput.Clip(d.Type), errdefs.ErrInvalidArgument)
		}
		if !typ.guestDriver && (d.ContainerPath == "" || !filepath.IsAbs(d.ContainerPath)) {
			return fmt.Errorf("device %d (%s %q): container_path %q is not absolute: %w", i, d.Type, hostinput.Clip(d.Id), hostinput.Clip(d.ContainerPath), errdefs.ErrInvalidArgument)
		}
		if typ.vfio {
			if len(d.Options) == 0 {
				return fmt.Errorf("device %d (%s): no HOST_BDF=PCI_PATH options: %w", i, d.Type, errdefs.ErrInvalidArgument)
			}
			for _, opt := range d.Options {
				host, path, ok := strings.Cut(opt, "=")
				if !ok || host == "" || strings.Contains(path, "=") {
					return fmt.Errorf("device %d (%s): option %q is not HOST_BDF=PCI_PATH: %w", i, d.Type, hostinput.Clip(opt), errdefs.ErrInvalidArgument)
				}
				if _, err := ParsePCIPath(path); err != nil {
					return fmt.Errorf("device %d (%s): %w", i, d.Type, err)
				}
			}
		}
		if !typ.guestDriver && findSpecDevice(spec, d.ContainerPath) < 0 {
			return fmt.Errorf("device %d (%s): no device %q in the OCI spec: %w", i, d.Type, hostinput.Clip(d.ContainerPath), errdefs.ErrInvalidArgument)
		}
	}
	var ups []update
	for _, d := range devices {
		typ, _ := lookupType(d.Type)
		node, err := typ.resolve(r, ctx, typ, d)
		if err != nil {
			return err
		}
		if node == "" {
			continue
		}
		info, err := r.stat(node)
		if err != nil {
			return fmt.Errorf("device %s %q: %w", d.Type, hostinput.Clip(d.Id), err)
		}
		idx := findSpecDevice(spec, d.ContainerPath)
		sd := spec.Linux.Devices[idx]
		u := update{typ: sd.Type, hostMaj: sd.Major, hostMin: sd.Minor, guest: info, origPath: d.ContainerPath, guestPath: d.ContainerPath}
		if typ.vfio {
			// The container sees the guest's group number.
			u.guestPath = filepath.Join(filepath.Dir(d.ContainerPath), filepath.Base(node))
		}
		ups = append(ups, u)
	}
	applyUpdates(spec, ups)
	return nil
}

// resolveVFIO waits for every function the runtime lists in options as
// "HOST_BDF=GUEST_PCI_PATH". With the guest-kernel variant the functions
// stay with their guest drivers and nothing in the spec changes; otherwise
// they are bound to vfio-pci, must share one IOMMU group, and that
// group's node replaces the host's in the spec.
func (r *Resolver) resolveVFIO(ctx context.Context, typ *deviceType, d *pb.Device) (string, error) {
	w := r.Waiter
	if len(d.Options) == 0 {
		return "", fmt.Errorf("device %s: no HOST_BDF=PCI_PATH options: %w", d.Type, ErrInvalid)
	}
	group := ""
	for _, opt := range d.Options {
		host, path, ok := strings.Cut(opt, "=")
		if !ok || host == "" || strings.Contains(path, "=") {
			return "", fmt.Errorf("device %s: option %q is not HOST_BDF=PCI_PATH: %w", d.Type, hostinput.Clip(opt), ErrInvalid)
		}
		dir, err := w.PCIDevice(ctx, path)
		if err != nil {
			return "", fmt.Errorf("device %s (host %s): %w", d.Type, hostinput.Clip(host), err)
		}
		if typ.guestDriver {
			continue
		}
		if err := bindVFIO(w.Sysfs, dir); err != nil {
			return "", fmt.Errorf("device %s (host %s): %w", d.Type, hostinput.Clip(host), err)
		}
		g, err := iommuGroup(dir)
		if err != nil {
			return "", fmt.Errorf("device %s (host %s): %w", d.Type, hostinput.Clip(host), err)
		}
		if group != "" && g != group {
			return "", fmt.Errorf("device %s: %s is in IOMMU group %s, not %s: %w", d.Type, path, g, group, errdefs.ErrFailedPrecondition)
		}
		group = g
	}
	if typ.guestDriver {
		return "", nil
	}
	return w.VFIONode(ctx, group)
}

// bindVFIO hands the PCI function to the vfio-pci driver so that a group
// node appears.
func bindVFIO(s Sysfs, dir string) error {
	bdf := filepath.Base(dir)
	if drv, err := os.Readlink(filepath.Join(dir, "driver")); err == nil && filepath.Base(drv) == "vfio-pci" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "driver_override"), []byte("vfio-pci"), 0); err != nil {
		return fmt.Errorf("set driver_override of %s: %w", bdf, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "driver")); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "driver", "unbind"), []byte(bdf), 0); err != nil {
			return fmt.Errorf("unbind %s from its driver: %w", bdf, err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.root(), "bus/pci/drivers_probe"), []byte(bdf), 0); err != nil {
		return fmt.Errorf("probe vfio-pci for %s: %w", bdf, err)
	}
	return nil
}

func (r *Resolver) stat(path string) (NodeInfo, error) {
	if r.StatNode != nil {
		return r.StatNode(path)
	}
	return statNode(path)
}

func findSpecDevice(spec *specs.Spec, path string) int {
	if spec.Linux == nil {
		return -1
	}
	for i, d := range spec.Linux.Devices {
		if d.Path == path {
			return i
		}
	}
	return -1
}

// applyUpdates rewrites devices and cgroup rules from the original host
// numbers, all at once, so that a guest number equal to another device's
// host number is not rewritten twice.
func applyUpdates(spec *specs.Spec, ups []update) {
	if len(ups) == 0 {
		return
	}
	for _, u := range ups {
		i := findSpecDevice(spec, u.origPath)
		d := &spec.Linux.Devices[i]
		d.Major, d.Minor = u.guest.Major, u.guest.Minor
		if u.guest.Type != "" {
			d.Type = u.guest.Type
		}
		d.Path = u.guestPath
	}
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	rules := spec.Linux.Resources.Devices
	matched := make([]bool, len(ups))
	for i := range rules {
		rl := &rules[i]
		if rl.Major == nil || rl.Minor == nil {
			continue
		}
		for j, u := range ups {
			if (rl.Type == u.typ || rl.Type == "a") && *rl.Major == u.hostMaj && *rl.Minor == u.hostMin {
				maj, min := u.guest.Major, u.guest.Minor
				rl.Major, rl.Minor = &maj, &min
				matched[j] = true
				break
			}
		}
	}
	for j, u := range ups {
		if matched[j] {
			continue
		}
		maj, min := u.guest.Major, u.guest.Minor
		typ := u.guest.Type
		if typ == "" {
			typ = u.typ
		}
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &maj, Minor: &min, Access: "rwm"})
	}
	spec.Linux.Resources.Devices = rules
}
