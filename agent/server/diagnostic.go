package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// logTypeTerminationLog is the one GetDiagnosticData log type upstream
// knows: the container's Kubernetes termination message.
const logTypeTerminationLog = "termination_log"

func (h *containerHandlers) GetDiagnosticData(_ context.Context, req *pb.GetDiagnosticDataRequest) (*pb.GetDiagnosticDataResponse, error) {
	if t := req.GetLogType(); t != logTypeTerminationLog {
		if len(t) > 64 {
			t = t[:64] + "..."
		}
		return nil, fmt.Errorf("GetDiagnosticData: log type %q is not supported (only %q): %w", t, logTypeTerminationLog, errdefs.ErrInvalidArgument)
	}
	data, err := h.sb.TerminationLog(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &pb.GetDiagnosticDataResponse{Data: data}, nil
}
