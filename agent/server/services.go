package server

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sandbox-guest/sandbox-guest/agent/storage"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// The groups of AgentService calls, each served by one handler type or by
// unimplemented. They are disjoint: together with the fallback they make
// up the service.

// containerService: the sandbox, its containers, their processes, stdio
// and diagnostics (containerHandlers).
type containerService interface {
	CreateSandbox(context.Context, *pb.CreateSandboxRequest) (*emptypb.Empty, error)
	DestroySandbox(context.Context, *pb.DestroySandboxRequest) (*emptypb.Empty, error)
	CreateContainer(context.Context, *pb.CreateContainerRequest) (*emptypb.Empty, error)
	StartContainer(context.Context, *pb.StartContainerRequest) (*emptypb.Empty, error)
	RemoveContainer(context.Context, *pb.RemoveContainerRequest) (*emptypb.Empty, error)
	ExecProcess(context.Context, *pb.ExecProcessRequest) (*emptypb.Empty, error)
	SignalProcess(context.Context, *pb.SignalProcessRequest) (*emptypb.Empty, error)
	WaitProcess(context.Context, *pb.WaitProcessRequest) (*pb.WaitProcessResponse, error)
	PauseContainer(context.Context, *pb.PauseContainerRequest) (*emptypb.Empty, error)
	ResumeContainer(context.Context, *pb.ResumeContainerRequest) (*emptypb.Empty, error)
	UpdateContainer(context.Context, *pb.UpdateContainerRequest) (*emptypb.Empty, error)
	StatsContainer(context.Context, *pb.StatsContainerRequest) (*pb.StatsContainerResponse, error)
	RemoveStaleVirtiofsShareMounts(context.Context, *pb.RemoveStaleVirtiofsShareMountsRequest) (*emptypb.Empty, error)
	GetOOMEvent(context.Context, *pb.GetOOMEventRequest) (*pb.OOMEvent, error)
	WriteStdin(context.Context, *pb.WriteStreamRequest) (*pb.WriteStreamResponse, error)
	ReadStdout(context.Context, *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error)
	ReadStderr(context.Context, *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error)
	CloseStdin(context.Context, *pb.CloseStdinRequest) (*emptypb.Empty, error)
	TtyWinResize(context.Context, *pb.TtyWinResizeRequest) (*emptypb.Empty, error)
	GetDiagnosticData(context.Context, *pb.GetDiagnosticDataRequest) (*pb.GetDiagnosticDataResponse, error)
}

// hotplugService: CPU and memory hot-plug (hotplugHandlers).
type hotplugService interface {
	OnlineCPUMem(context.Context, *pb.OnlineCPUMemRequest) (*emptypb.Empty, error)
	MemHotplugByProbe(context.Context, *pb.MemHotplugByProbeRequest) (*emptypb.Empty, error)
}

// guestService: what the agent and guest are (guestHandlers; always
// served).
type guestService interface {
	GetGuestDetails(context.Context, *pb.GuestDetailsRequest) (*pb.GuestDetailsResponse, error)
}

// metricsService: the agent's and guest's metrics (metricsHandlers).
type metricsService interface {
	GetMetrics(context.Context, *pb.GetMetricsRequest) (*pb.Metrics, error)
}

// fileService: files the runtime copies in (fileHandlers; always served).
type fileService interface {
	CopyFile(context.Context, *pb.CopyFileRequest) (*emptypb.Empty, error)
}

// storageService: mounted storages (storageHandlers).
type storageService interface {
	UpdateEphemeralMounts(context.Context, *pb.UpdateEphemeralMountsRequest) (*emptypb.Empty, error)
	GetVolumeStats(context.Context, *pb.VolumeStatsRequest) (*pb.VolumeStatsResponse, error)
	ResizeVolume(context.Context, *pb.ResizeVolumeRequest) (*emptypb.Empty, error)
}

// systemService: the guest's clock and entropy (systemHandlers).
type systemService interface {
	SetGuestDateTime(context.Context, *pb.SetGuestDateTimeRequest) (*emptypb.Empty, error)
	ReseedRandomDev(context.Context, *pb.ReseedRandomDevRequest) (*emptypb.Empty, error)
}

// networkService: interfaces, routes, neighbours, iptables
// (networkHandlers).
type networkService interface {
	UpdateInterface(context.Context, *pb.UpdateInterfaceRequest) (*typespb.Interface, error)
	UpdateRoutes(context.Context, *pb.UpdateRoutesRequest) (*pb.Routes, error)
	ListInterfaces(context.Context, *pb.ListInterfacesRequest) (*pb.Interfaces, error)
	ListRoutes(context.Context, *pb.ListRoutesRequest) (*pb.Routes, error)
	AddARPNeighbors(context.Context, *pb.AddARPNeighborsRequest) (*emptypb.Empty, error)
	GetIPTables(context.Context, *pb.GetIPTablesRequest) (*pb.GetIPTablesResponse, error)
	SetIPTables(context.Context, *pb.SetIPTablesRequest) (*pb.SetIPTablesResponse, error)
}

// newAgentService chooses, once, what serves each group.
func newAgentService(opts Options, log *slog.Logger) *agentService {
	var none unimplemented
	svc := &agentService{
		containerService: none, hotplugService: none, metricsService: none,
		storageService: none, systemService: none, networkService: none, swapService: none,
		fileService: &fileHandlers{copier: &storage.FileCopier{Root: opts.CopyFileRoot}},
	}
	guest := &guestHandlers{memory: noMemoryInfo{}, info: opts.AgentInfo}
	if opts.Sandbox != nil {
		h := &containerHandlers{sb: opts.Sandbox, streams: noStreams{}, agentLog: opts.AgentLog}
		if opts.Streams != nil {
			h.streams = opts.Streams
		}
		svc.containerService = h
	}
	if opts.Hotplug != nil {
		svc.hotplugService = &hotplugHandlers{onliner: opts.Hotplug}
		guest.memory = opts.Hotplug
	}
	svc.guestService = guest
	if opts.Metrics != nil {
		svc.metricsService = &metricsHandlers{metrics: opts.Metrics, log: log}
	}
	if opts.Storage != nil {
		svc.storageService = &storageHandlers{storage: opts.Storage}
	}
	if opts.System != nil {
		svc.systemService = &systemHandlers{sys: opts.System}
	}
	if opts.Network != nil {
		svc.networkService = &networkHandlers{net: opts.Network}
	}
	if opts.Swap != nil {
		svc.swapService = &swapHandlers{swap: opts.Swap}
	}
	return svc
}
