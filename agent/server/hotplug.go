package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sandbox-guest/sandbox-guest/agent/hotplug"
	"github.com/sandbox-guest/sandbox-guest/agent/metrics"
	"github.com/sandbox-guest/sandbox-guest/agent/version"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// AgentInfo describes this agent in GetGuestDetails; main fills it.
type AgentInfo struct {
	// Version defaults to version.Version.
	Version string
	// InitDaemon is true when the agent runs as PID 1.
	InitDaemon bool
	// DeviceHandlers and StorageHandlers name the device and storage
	// drivers the agent accepts.
	DeviceHandlers  []string
	StorageHandlers []string
	// SupportsSeccomp is true when the agent was built with seccomp.
	SupportsSeccomp bool
	// FIPS adds "fips" to the extra features.
	FIPS bool
	// ExtraFeatures lists further optional features.
	ExtraFeatures []string
}

// maxProbeAddrs bounds one MemHotplugByProbe request: 64Ki blocks of the
// smallest block size (128 MiB on x86) is 8 TiB, more than any sandbox VM.
const maxProbeAddrs = 1 << 16

// hotplugHandlers answers CPU and memory hot-plug, GetGuestDetails and
// GetMetrics.
type hotplugHandlers struct {
	onliner *hotplug.Onliner
	metrics *metrics.Collector
	info    AgentInfo
	log     *slog.Logger
}

func newHotplugHandlers(opts Options, log *slog.Logger) *hotplugHandlers {
	return &hotplugHandlers{onliner: opts.Hotplug, metrics: opts.Metrics, info: opts.AgentInfo, log: log}
}

func (h *hotplugHandlers) needOnliner(method string) error {
	if h.onliner == nil {
		return fmt.Errorf("%s: CPU and memory hot-plug is not configured in this agent: %w", method, errdefs.ErrNotImplemented)
	}
	return nil
}

// OnlineCPUMem onlines hot-plugged CPUs and memory. It always completes
// before answering, whatever req.Wait says: the Kata runtime sends
// Wait=false yet starts containers right after, and only a synchronous
// answer can report a failure.
func (h *hotplugHandlers) OnlineCPUMem(ctx context.Context, req *pb.OnlineCPUMemRequest) (*emptypb.Empty, error) {
	if err := h.needOnliner("OnlineCPUMem"); err != nil {
		return nil, err
	}
	if err := h.onliner.OnlineCPUMem(ctx, req.GetNbCpus(), req.GetCpuOnly()); err != nil {
		return nil, fmt.Errorf("online CPUs and memory (nb_cpus=%d, cpu_only=%t): %w", req.GetNbCpus(), req.GetCpuOnly(), err)
	}
	return &emptypb.Empty{}, nil
}

// MemHotplugByProbe adds memory at the given physical addresses through the
// kernel's probe interface.
func (h *hotplugHandlers) MemHotplugByProbe(ctx context.Context, req *pb.MemHotplugByProbeRequest) (*emptypb.Empty, error) {
	if err := h.needOnliner("MemHotplugByProbe"); err != nil {
		return nil, err
	}
	addrs := req.GetMemHotplugProbeAddr()
	if len(addrs) > maxProbeAddrs {
		return nil, fmt.Errorf("memHotplugProbeAddr: %d addresses, at most %d accepted: %w", len(addrs), maxProbeAddrs, errdefs.ErrInvalidArgument)
	}
	if err := h.onliner.MemHotplugByProbe(addrs); err != nil {
		return nil, fmt.Errorf("memory hot-plug by probe: %w", err)
	}
	return &emptypb.Empty{}, nil
}

// GetGuestDetails reports the memory block size and probe support when
// asked, and always the agent's details.
func (h *hotplugHandlers) GetGuestDetails(ctx context.Context, req *pb.GuestDetailsRequest) (*pb.GuestDetailsResponse, error) {
	resp := &pb.GuestDetailsResponse{AgentDetails: h.agentDetails()}
	if req.GetMemBlockSize() || req.GetMemHotplugProbe() {
		if err := h.needOnliner("GetGuestDetails"); err != nil {
			return nil, err
		}
		size, probe, err := h.onliner.MemoryInfo(req.GetMemBlockSize(), req.GetMemHotplugProbe())
		if err != nil {
			return nil, fmt.Errorf("guest memory details: %w", err)
		}
		resp.MemBlockSizeBytes = size
		resp.SupportMemHotplugProbe = probe
	}
	return resp, nil
}

func (h *hotplugHandlers) agentDetails() *pb.AgentDetails {
	v := h.info.Version
	if v == "" {
		v = version.Version
	}
	extra := slices.Clone(h.info.ExtraFeatures)
	if h.info.FIPS && !slices.Contains(extra, "fips") {
		extra = append(extra, "fips")
	}
	return &pb.AgentDetails{
		Version:         v,
		InitDaemon:      h.info.InitDaemon,
		DeviceHandlers:  slices.Clone(h.info.DeviceHandlers),
		StorageHandlers: slices.Clone(h.info.StorageHandlers),
		SupportsSeccomp: h.info.SupportsSeccomp,
		ExtraFeatures:   extra,
	}
}

// GetMetrics returns the Prometheus text exposition. A section that could
// not be read is left out and logged rather than failing the whole scrape.
func (h *hotplugHandlers) GetMetrics(ctx context.Context, req *pb.GetMetricsRequest) (*pb.Metrics, error) {
	if h.metrics == nil {
		return nil, fmt.Errorf("GetMetrics: metrics are not configured in this agent: %w", errdefs.ErrNotImplemented)
	}
	text, err := h.metrics.Gather()
	if err != nil {
		h.log.Warn("metrics incomplete", "error", err)
	}
	return &pb.Metrics{Metrics: text}, nil
}
