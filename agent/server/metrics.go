package server

import (
	"context"
	"log/slog"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// Metrics gathers the Prometheus text of GetMetrics (*metrics.Collector).
type Metrics interface {
	Gather() (string, error)
}

// metricsHandlers answers GetMetrics.
type metricsHandlers struct {
	metrics Metrics
	log     *slog.Logger
}

// GetMetrics returns the Prometheus text exposition. A section that could
// not be read is left out and logged rather than failing the whole scrape.
func (h *metricsHandlers) GetMetrics(ctx context.Context, req *pb.GetMetricsRequest) (*pb.Metrics, error) {
	text, err := h.metrics.Gather()
	if err != nil {
		h.log.Warn("metrics incomplete", "error", err)
	}
	return &pb.Metrics{Metrics: text}, nil
}
