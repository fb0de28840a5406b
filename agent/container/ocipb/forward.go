// Package ocipb forwards to protocols/ocipb, where the conversion now
// lives. It remains only while agent/server/containers.go still imports
// this path; delete it once that import names protocols/ocipb.
package ocipb

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/ocipb"
)

// ToSpec is ocipb.ToSpec.
func ToSpec(s *pb.Spec) (*specs.Spec, error) { return ocipb.ToSpec(s) }

// ToProcess is ocipb.ToProcess.
func ToProcess(p *pb.Process) *specs.Process { return ocipb.ToProcess(p) }

// ToResources is ocipb.ToResources.
func ToResources(r *pb.LinuxResources) *specs.LinuxResources { return ocipb.ToResources(r) }
