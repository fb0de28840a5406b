// Package sandbox holds the agent's pod state: the sandbox (hostname, DNS,
// shared namespaces, storages) and its containers, and implements the
// container RPCs on top of package container.
//
// Namespaces: UTS and IPC are shared by the pod's containers through a
// sandbox-level holder rather than the first container: CreateSandbox
// unshares them on a throw-away OS thread and bind-mounts the namespace
// files under the sandbox directory, so they outlive any container
// (agentctl and tests create and remove containers in any order) and cost
// no process. The shared PID namespace (containers created with
// sandbox_pidns join it) is the infra (pause) container's, as upstream:
// the pause process is PID 1 for the pod and outlives its application
// containers; a pid namespace needs a living init to reap orphans.
//
// Lock order: Sandbox.mu, then Container.mu, then Process.mu (package
// container), then Reaper.mu (package reaper). Sandbox.mu only guards maps
// and fields: it is never held while waiting for a process, reading stdio,
// mounting or starting a container, so blocking calls (WaitProcess,
// ReadStdout, GetOOMEvent) never hold up unrelated ones. A container id is
// reserved in the map (nil value) while it is being created, so duplicate
// creates fail fast without holding the lock across the create.
package sandbox
