package sandbox

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestRoleOf(t *testing.T) {
	for _, tc := range []struct {
		name        string
		id, sandbox string
		ann         map[string]string
		want        containerRole
	}{
		{"kata infra has the sandbox id", "pod1", "pod1", nil, roleInfra},
		{"no sandbox id", "pod1", "", nil, roleUnknown},
		{"no annotations", "c1", "pod1", nil, roleUnknown},
		{"containerd sandbox", "c1", "pod1", map[string]string{"io.kubernetes.cri.container-type": "sandbox"}, roleInfra},
		{"containerd container", "c1", "pod1", map[string]string{"io.kubernetes.cri.container-type": "container"}, roleApp},
		{"cri-o sandbox", "c1", "pod1", map[string]string{"io.kubernetes.cri-o.ContainerType": "sandbox"}, roleInfra},
		{"cri-o container", "c1", "pod1", map[string]string{"io.kubernetes.cri-o.ContainerType": "container"}, roleApp},
		{"dockershim sandbox", "c1", "pod1", map[string]string{"io.kubernetes.docker.type": "podsandbox"}, roleInfra},
		{"kata pod_sandbox", "c1", "pod1", map[string]string{"io.katacontainers.pkg.oci.container_type": "pod_sandbox"}, roleInfra},
		{"kata pod_container", "c1", "pod1", map[string]string{"io.katacontainers.pkg.oci.container_type": "pod_container"}, roleApp},
		{"kata single_container", "c1", "pod1", map[string]string{"io.katacontainers.pkg.oci.container_type": "single_container"}, roleUnknown},
		{"both say container, kata too", "c1", "pod1", map[string]string{
			"io.kubernetes.cri.container-type": "container", "io.katacontainers.pkg.oci.container_type": "pod_container"}, roleApp},
		{"the sandbox id wins over an app annotation", "pod1", "pod1", map[string]string{"io.kubernetes.cri.container-type": "container"}, roleInfra},
		{"unknown value", "c1", "pod1", map[string]string{"io.kubernetes.cri.container-type": "pause"}, roleUnknown},
	} {
		if got := roleOf(tc.id, tc.sandbox, tc.ann); got != tc.want {
			t.Errorf("%s: role %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestPlanPidnsWithoutInfra covers the decisions that need no running
// container (the host tests cover joining a live infra container).
func TestPlanPidnsWithoutInfra(t *testing.T) {
	app := map[string]string{"io.kubernetes.cri.container-type": "container"}
	infra := map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
	s := newTestSandbox(t, Config{})
	s.id = "pod1"
	reserve := func(id string) { s.containers[id] = nil }

	// The runtime sends sandbox_pidns=false for the pause container: it
	// still gets the namespace the pod shares.
	reserve("pause")
	if p, err := s.planPidns("pause", infra, false); err != nil || !p.hold || p.join != "" {
		t.Errorf("infra container: %+v, %v; want a new namespace it holds", p, err)
	}
	// The pod id is Kata's id for the pause container.
	if p, err := s.planPidns("pod1", nil, false); err != nil || !p.hold {
		t.Errorf("container with the sandbox id: %+v, %v; want it to hold the namespace", p, err)
	}
	// An application container is never the owner: asking to share with
	// no infra container is refused rather than giving it a namespace
	// that would die with it.
	reserve("app")
	_, err := s.planPidns("app", app, true)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "no infra container") {
		t.Errorf("app container sharing without infra: %v, want FailedPrecondition", err)
	}
	if p, err := s.planPidns("app", app, false); err != nil || p.hold || p.join != "" {
		t.Errorf("app container not sharing: %+v, %v; want its own namespace", p, err)
	}
	// Without annotations, the first container is taken for the infra
	// container (upstream's rule), later ones are not.
	s2 := newTestSandbox(t, Config{})
	s2.containers["first"] = nil
	if p, err := s2.planPidns("first", nil, true); err != nil || !p.hold {
		t.Errorf("first unannotated container: %+v, %v; want it to hold the namespace", p, err)
	}
	s2.containers["second"] = nil
	if p, err := s2.planPidns("second", nil, false); err != nil || p.hold {
		t.Errorf("second unannotated container: %+v, %v; want no hold", p, err)
	}
	// An owner recorded but not (or no longer) in the map: refused.
	s2.pidnsOwner = "gone"
	if _, err := s2.planPidns("second", nil, true); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("owner gone: %v, want FailedPrecondition", err)
	}
}
