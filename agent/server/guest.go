package server

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerd/errdefs"

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

// MemoryInfo reports the guest's memory block size and whether memory
// can be added through the probe interface (*hotplug.Onliner).
type MemoryInfo interface {
	MemoryInfo(blockSize, probe bool) (size uint64, probeOK bool, err error)
}

// noMemoryInfo answers GetGuestDetails' memory questions in an agent
// without hot-plug.
type noMemoryInfo struct{}

func (noMemoryInfo) MemoryInfo(bool, bool) (uint64, bool, error) {
	return 0, false, fmt.Errorf("GetGuestDetails: CPU and memory hot-plug is not configured in this agent: %w", errdefs.ErrNotImplemented)
}

// guestHandlers answers GetGuestDetails: the agent's details and the
// guest's memory hot-plug facts.
type guestHandlers struct {
	memory MemoryInfo
	info   AgentInfo
}

// GetGuestDetails reports the memory block size and probe support when
// asked, and always the agent's details.
func (h *guestHandlers) GetGuestDetails(ctx context.Context, req *pb.GuestDetailsRequest) (*pb.GuestDetailsResponse, error) {
	resp := &pb.GuestDetailsResponse{AgentDetails: h.agentDetails()}
	if req.GetMemBlockSize() || req.GetMemHotplugProbe() {
		size, probe, err := h.memory.MemoryInfo(req.GetMemBlockSize(), req.GetMemHotplugProbe())
		if err != nil {
			return nil, fmt.Errorf("guest memory details: %w", err)
		}
		resp.MemBlockSizeBytes = size
		resp.SupportMemHotplugProbe = probe
	}
	return resp, nil
}

func (h *guestHandlers) agentDetails() *pb.AgentDetails {
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
