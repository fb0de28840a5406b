// Package guestpath is the guest's path layout, in one place.
//
// It lives under protocols/ because part of it is a contract: the runtime
// (and our host kit) name paths in KataRoot in their requests.
//
// Two trees, kept apart on purpose:
//
//   - KataRoot (/run/kata-containers) belongs to the runtime: it names mount
//     points there (the virtio-fs share, sandbox storages, container
//     rootfs), and part of it (the share) is writable by the host. Every
//     storage mount point must lie below it.
//   - AgentRoot (/run/kata-agent) belongs to the agent alone: container
//     bundles, libcontainer state, the sandbox's namespace files and DNS
//     file. No storage can be mounted there and no container id can name
//     anything but its own entry, so removing a container's state can never
//     reach a storage or the share.
package guestpath

// The runtime's tree, as the Kata runtime addresses it.
const (
	// KataRoot confines every storage mount point.
	KataRoot = "/run/kata-containers"
	// SharedDir is where the virtio-fs (or 9p) share is mounted; container
	// rootfs are SharedDir/<cid>/rootfs, and CopyFile writes only below it.
	SharedDir = KataRoot + "/shared/containers"
	// WatchableDir holds the copies of watchable-bind storages (a guest
	// tmpfs inside the share's mount point).
	WatchableDir = SharedDir + "/watchable"
	// SandboxStorageDir holds sandbox-level storages the runtime names
	// (shm, ephemeral and local volumes).
	SandboxStorageDir = KataRoot + "/sandbox"
)

// The agent's own tree.
const (
	// AgentRoot is private to the agent.
	AgentRoot = "/run/kata-agent"
	// BundleDir holds one bundle directory per container id and nothing
	// else: ids are validated names, so an id can only ever alias its own
	// bundle.
	BundleDir = AgentRoot + "/bundles"
	// StateDir is libcontainer's state root.
	StateDir = AgentRoot + "/libcontainer"
	// SandboxDir holds the sandbox's namespace files and resolv.conf.
	SandboxDir = AgentRoot + "/sandbox"
)
