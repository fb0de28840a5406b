package server

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/contract"
)

// GetDiagnosticData log types (protocols/contract): upstream's, and two of
// ours; any other type stays InvalidArgument, as upstream answers it.
const (
	logTypeTerminationLog  = contract.DiagnosticTerminationLog
	logTypeAgentLog        = contract.DiagnosticAgentLog
	logTypeAgentContainers = contract.DiagnosticAgentContainers
)

// AgentLog is the agent's recent log lines (a *logging.Ring).
type AgentLog interface {
	Text() string
}

func (h *containerHandlers) GetDiagnosticData(_ context.Context, req *pb.GetDiagnosticDataRequest) (*pb.GetDiagnosticDataResponse, error) {
	switch t := req.GetLogType(); t {
	case logTypeTerminationLog:
		data, err := h.sb.TerminationLog(req.GetContainerId())
		if err != nil {
			return nil, err
		}
		return &pb.GetDiagnosticDataResponse{Data: data}, nil
	case logTypeAgentLog, logTypeAgentContainers:
		if req.GetContainerId() != "" {
			return nil, fmt.Errorf("GetDiagnosticData: log type %q is the agent's and takes no container id: %w", t, errdefs.ErrInvalidArgument)
		}
		if t == logTypeAgentContainers {
			b, err := json.Marshal(h.sb.ContainerStates())
			if err != nil {
				return nil, fmt.Errorf("GetDiagnosticData: encode container states: %w", err)
			}
			return &pb.GetDiagnosticDataResponse{Data: string(b)}, nil
		}
		if h.agentLog == nil {
			return nil, fmt.Errorf("GetDiagnosticData: this agent keeps no log lines: %w", errdefs.ErrFailedPrecondition)
		}
		return &pb.GetDiagnosticDataResponse{Data: h.agentLog.Text()}, nil
	default:
		if len(t) > 64 {
			t = t[:64] + "..."
		}
		return nil, fmt.Errorf("GetDiagnosticData: log type %q is not supported (%q, %q or %q): %w",
			t, logTypeTerminationLog, logTypeAgentLog, logTypeAgentContainers, errdefs.ErrInvalidArgument)
	}
}
