package sandbox

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// StorageManager mounts the storages the runtime sends with CreateSandbox
// and CreateContainer (implemented by the storage package).
type StorageManager interface {
	// Mount mounts storages for owner (the container id, or a key of the sandbox's own that
	// no container id can equal), reference-counted by mount point; an already-mounted point
	// only gains a reference.
	Mount(ctx context.Context, owner string, storages []*pb.Storage) error
	// Release drops owner's references; the last reference unmounts.
	Release(ctx context.Context, owner string) error
}

// DeviceResolver locates the devices of CreateContainer in the guest.
type DeviceResolver interface {
	// Apply waits for each device (bounded by the hotplug timeout), resolves its guest node
	// and rewrites the matching spec.Linux.Devices entry (by container_path) with the guest
	// major/minor, adding the device cgroup rule.
	Apply(ctx context.Context, devices []*pb.Device, spec *specs.Spec) error
}
