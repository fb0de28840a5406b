package sandbox

import (
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
)

// containerRole is what a container is to its pod.
type containerRole int

const (
	roleUnknown containerRole = iota // no container-type annotation
	roleInfra                        // the pod's infra (pause) container
	roleApp                          // an application container
)

// containerTypeAnnotations are the annotations in which the container
// managers, and the Kata runtime after them, tell a pod's infra container
// from its application containers, with the values for each.
var containerTypeAnnotations = []struct{ key, infra, app string }{
	{"io.kubernetes.cri.container-type", "sandbox", "container"},                 // containerd
	{"io.kubernetes.cri-o.ContainerType", "sandbox", "container"},                // CRI-O
	{"io.kubernetes.docker.type", "podsandbox", "container"},                     // dockershim
	{"io.katacontainers.pkg.oci.container_type", "pod_sandbox", "pod_container"}, // Kata runtime
}

// roleOf classifies container id of sandbox sandboxID: the Kata runtime
// gives the infra container the sandbox's id, and the container managers
// annotate the type of each container.
func roleOf(id, sandboxID string, annotations map[string]string) containerRole {
	if sandboxID != "" && id == sandboxID {
		return roleInfra
	}
	role := roleUnknown
	for _, a := range containerTypeAnnotations {
		switch annotations[a.key] {
		case a.infra:
			return roleInfra
		case a.app:
			role = roleApp
		}
	}
	return role
}

// pidnsPlan is how a new container gets its pid namespace.
type pidnsPlan struct {
	// hold: a new namespace that becomes the sandbox's shared one.
	hold bool
	// join is the path of the shared namespace the container joins, that
	// of owner's init.
	join    string
	owner   *container.Container
	ownerID string
}

// planPidns decides the pid namespace of container id. The sandbox's
// shared namespace is that of its infra container, as upstream: the pause
// process is PID 1 for every container that shares it, and an application
// container's exit never takes the namespace down. Without container-type
// annotations, the first container of the sandbox is taken for the infra
// container, which is upstream's rule.
func (s *Sandbox) planPidns(id string, annotations map[string]string, sandboxPID bool) (pidnsPlan, error) {
	s.mu.Lock()
	ownerID := s.pidnsOwner
	owner := s.containers[ownerID]
	first := true
	for other := range s.containers {
		if other != id {
			first = false
		}
	}
	role := roleOf(id, s.id, annotations)
	s.mu.Unlock()

	if ownerID == "" && (role == roleInfra || (role == roleUnknown && first)) {
		return pidnsPlan{hold: true}, nil
	}
	if !sandboxPID {
		return pidnsPlan{}, nil
	}
	if ownerID == "" || owner == nil {
		return pidnsPlan{}, fmt.Errorf("container %q asks for the sandbox's pid namespace, but no infra container holds one: %w", id, errdefs.ErrFailedPrecondition)
	}
	path, err := owner.PidNamespacePath(s.cfg.ProcRoot)
	if err != nil {
		return pidnsPlan{}, fmt.Errorf("container %q: shared pid namespace of infra container %q: %w", id, ownerID, err)
	}
	return pidnsPlan{join: path, owner: owner, ownerID: ownerID}, nil
}

// confirm checks, once container id has joined the shared namespace, that
// the owner's init ran throughout: its pid cannot have been given to
// another process meanwhile, so the namespace joined was the sandbox's.
func (p pidnsPlan) confirm(id string) error {
	if p.owner == nil {
		return nil
	}
	if err := p.owner.InitRunning(); err != nil {
		return fmt.Errorf("container %q: shared pid namespace of infra container %q: %w", id, p.ownerID, err)
	}
	return nil
}
