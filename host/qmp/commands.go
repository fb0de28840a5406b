package qmp

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoFreeCPU is returned by HotplugCPU when every possible vCPU is present.
var ErrNoFreeCPU = errors.New("qmp: no hot-pluggable CPU slot left")

// MemoryDevice is one entry of query-memory-devices.
type MemoryDevice struct {
	Type string `json:"type"`
	Data struct {
		ID           string `json:"id"`
		Addr         uint64 `json:"addr"`
		Size         uint64 `json:"size"`
		Slot         int    `json:"slot"`
		Node         int    `json:"node"`
		Memdev       string `json:"memdev"`
		Hotplugged   bool   `json:"hotplugged"`
		Hotpluggable bool   `json:"hotpluggable"`
	} `json:"data"`
}

// HotpluggableCPU is one entry of query-hotpluggable-cpus.
type HotpluggableCPU struct {
	Type       string         `json:"type"`
	VCPUsCount int            `json:"vcpus-count"`
	Props      map[string]any `json:"props"`
	QOMPath    string         `json:"qom-path,omitempty"`
}

// Status is the reply of query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

// QueryStatus reports the VM run state.
func (c *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// ObjectAddMemfd adds a shared memfd memory backend of size bytes. Shared
// memory is required whenever a vhost-user device must see the new RAM.
func (c *Client) ObjectAddMemfd(ctx context.Context, id string, size uint64) error {
	return c.Execute(ctx, "object-add", map[string]any{
		"qom-type": "memory-backend-memfd",
		"id":       id,
		"size":     size,
		"share":    true,
	}, nil)
}

// ObjectDel removes a QOM object.
func (c *Client) ObjectDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "object-del", map[string]any{"id": id}, nil)
}

// DeviceAdd runs device_add with driver, id and extra properties.
func (c *Client) DeviceAdd(ctx context.Context, driver, id string, props map[string]any) error {
	args := map[string]any{"driver": driver, "id": id}
	for k, v := range props {
		if k == "driver" || k == "id" {
			return fmt.Errorf("qmp device_add: property %q set twice", k)
		}
		args[k] = v
	}
	return c.Execute(ctx, "device_add", args, nil)
}

// HotplugMemory adds a pc-dimm of size bytes backed by shared memfd memory.
// The backend is named "mem-<id>" and the DIMM "<id>"; on a failed
// device_add the backend is removed again.
func (c *Client) HotplugMemory(ctx context.Context, id string, size uint64) error {
	backend := "mem-" + id
	if err := c.ObjectAddMemfd(ctx, backend, size); err != nil {
		return fmt.Errorf("hot-plug memory %s: %w", id, err)
	}
	if err := c.DeviceAdd(ctx, "pc-dimm", id, map[string]any{"memdev": backend}); err != nil {
		if derr := c.ObjectDel(ctx, backend); derr != nil {
			err = errors.Join(err, derr)
		}
		return fmt.Errorf("hot-plug memory %s: %w", id, err)
	}
	return nil
}

// QueryMemoryDevices lists the memory devices (DIMMs) of the VM.
func (c *Client) QueryMemoryDevices(ctx context.Context) ([]MemoryDevice, error) {
	var devs []MemoryDevice
	err := c.Execute(ctx, "query-memory-devices", nil, &devs)
	return devs, err
}

// QueryHotpluggableCPUs lists the possible vCPUs; plugged ones have a QOM path.
func (c *Client) QueryHotpluggableCPUs(ctx context.Context) ([]HotpluggableCPU, error) {
	var cpus []HotpluggableCPU
	err := c.Execute(ctx, "query-hotpluggable-cpus", nil, &cpus)
	return cpus, err
}

// HotplugCPU plugs the first absent vCPU reported by
// query-hotpluggable-cpus under device id and returns its properties.
func (c *Client) HotplugCPU(ctx context.Context, id string) (HotpluggableCPU, error) {
	cpus, err := c.QueryHotpluggableCPUs(ctx)
	if err != nil {
		return HotpluggableCPU{}, fmt.Errorf("hot-plug cpu %s: %w", id, err)
	}
	for _, cpu := range cpus {
		if cpu.QOMPath != "" {
			continue
		}
		if cpu.Type == "" {
			return HotpluggableCPU{}, fmt.Errorf("hot-plug cpu %s: QEMU reported a CPU slot without a type", id)
		}
		if err := c.DeviceAdd(ctx, cpu.Type, id, cpu.Props); err != nil {
			return HotpluggableCPU{}, fmt.Errorf("hot-plug cpu %s: %w", id, err)
		}
		return cpu, nil
	}
	return HotpluggableCPU{}, fmt.Errorf("hot-plug cpu %s: %w", id, ErrNoFreeCPU)
}

// Quit asks QEMU to exit at once. QEMU may close the connection before or
// right after replying; both count as success.
func (c *Client) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// SystemPowerdown sends an ACPI power button press to the guest.
func (c *Client) SystemPowerdown(ctx context.Context) error {
	return c.Execute(ctx, "system_powerdown", nil, nil)
}

// HotplugBlock adds the raw disk image at path as block node "<id>-node"
// and plugs it as virtio-blk-pci device id on bus (a hot-pluggable port,
// e.g. a pcie-root-port). On a failed device_add the node is removed again.
func (c *Client) HotplugBlock(ctx context.Context, id, path, bus string, readOnly bool) error {
	node := id + "-node"
	err := c.Execute(ctx, "blockdev-add", map[string]any{
		"driver":    "raw",
		"node-name": node,
		"read-only": readOnly,
		"file":      map[string]any{"driver": "file", "filename": path, "read-only": readOnly},
	}, nil)
	if err != nil {
		return fmt.Errorf("hot-plug disk %s: %w", id, err)
	}
	if err := c.DeviceAdd(ctx, "virtio-blk-pci", id, map[string]any{"drive": node, "bus": bus}); err != nil {
		if derr := c.Execute(ctx, "blockdev-del", map[string]any{"node-name": node}, nil); derr != nil {
			err = errors.Join(err, derr)
		}
		return fmt.Errorf("hot-plug disk %s: %w", id, err)
	}
	return nil
}
