package server

import (
	"context"

	"github.com/sandbox-guest/sandbox-guest/agent/version"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// healthService answers the runtime's liveness polls. The runtime only
// looks for an error, so Check answers SERVING whenever the server runs.
type healthService struct{}

func (healthService) Check(context.Context, *pb.CheckRequest) (*pb.HealthCheckResponse, error) {
	return &pb.HealthCheckResponse{Status: pb.HealthCheckResponse_SERVING}, nil
}

func (healthService) Version(context.Context, *pb.CheckRequest) (*pb.VersionCheckResponse, error) {
	return &pb.VersionCheckResponse{GrpcVersion: version.APIVersion, AgentVersion: version.Version}, nil
}
