package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// unimplemented answers every AgentService method with Unimplemented,
// naming the method. agentService embeds it one level deeper than the
// concern handlers, so a concern's method always wins over these.
type unimplemented struct{}

func notImplemented(method string) error {
	return fmt.Errorf("method %s is not implemented by this agent: %w", method, errdefs.ErrNotImplemented)
}

func (unimplemented) CreateContainer(context.Context, *pb.CreateContainerRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("CreateContainer")
}
func (unimplemented) StartContainer(context.Context, *pb.StartContainerRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("StartContainer")
}
func (unimplemented) RemoveContainer(context.Context, *pb.RemoveContainerRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("RemoveContainer")
}
func (unimplemented) ExecProcess(context.Context, *pb.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("ExecProcess")
}
func (unimplemented) SignalProcess(context.Context, *pb.SignalProcessRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("SignalProcess")
}
func (unimplemented) WaitProcess(context.Context, *pb.WaitProcessRequest) (*pb.WaitProcessResponse, error) {
	return nil, notImplemented("WaitProcess")
}
func (unimplemented) UpdateContainer(context.Context, *pb.UpdateContainerRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("UpdateContainer")
}
func (unimplemented) UpdateEphemeralMounts(context.Context, *pb.UpdateEphemeralMountsRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("UpdateEphemeralMounts")
}
func (unimplemented) StatsContainer(context.Context, *pb.StatsContainerRequest) (*pb.StatsContainerResponse, error) {
	return nil, notImplemented("StatsContainer")
}
func (unimplemented) PauseContainer(context.Context, *pb.PauseContainerRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("PauseContainer")
}
func (unimplemented) ResumeContainer(context.Context, *pb.ResumeContainerRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("ResumeContainer")
}
func (unimplemented) RemoveStaleVirtiofsShareMounts(context.Context, *pb.RemoveStaleVirtiofsShareMountsRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("RemoveStaleVirtiofsShareMounts")
}
func (unimplemented) WriteStdin(context.Context, *pb.WriteStreamRequest) (*pb.WriteStreamResponse, error) {
	return nil, notImplemented("WriteStdin")
}
func (unimplemented) ReadStdout(context.Context, *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error) {
	return nil, notImplemented("ReadStdout")
}
func (unimplemented) ReadStderr(context.Context, *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error) {
	return nil, notImplemented("ReadStderr")
}
func (unimplemented) CloseStdin(context.Context, *pb.CloseStdinRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("CloseStdin")
}
func (unimplemented) TtyWinResize(context.Context, *pb.TtyWinResizeRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("TtyWinResize")
}
func (unimplemented) UpdateInterface(context.Context, *pb.UpdateInterfaceRequest) (*typespb.Interface, error) {
	return nil, notImplemented("UpdateInterface")
}
func (unimplemented) UpdateRoutes(context.Context, *pb.UpdateRoutesRequest) (*pb.Routes, error) {
	return nil, notImplemented("UpdateRoutes")
}
func (unimplemented) ListInterfaces(context.Context, *pb.ListInterfacesRequest) (*pb.Interfaces, error) {
	return nil, notImplemented("ListInterfaces")
}
func (unimplemented) ListRoutes(context.Context, *pb.ListRoutesRequest) (*pb.Routes, error) {
	return nil, notImplemented("ListRoutes")
}
func (unimplemented) AddARPNeighbors(context.Context, *pb.AddARPNeighborsRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("AddARPNeighbors")
}
func (unimplemented) GetIPTables(context.Context, *pb.GetIPTablesRequest) (*pb.GetIPTablesResponse, error) {
	return nil, notImplemented("GetIPTables")
}
func (unimplemented) SetIPTables(context.Context, *pb.SetIPTablesRequest) (*pb.SetIPTablesResponse, error) {
	return nil, notImplemented("SetIPTables")
}
func (unimplemented) GetMetrics(context.Context, *pb.GetMetricsRequest) (*pb.Metrics, error) {
	return nil, notImplemented("GetMetrics")
}
func (unimplemented) MemAgentMemcgSet(context.Context, *pb.MemAgentMemcgConfig) (*emptypb.Empty, error) {
	return nil, notImplemented("MemAgentMemcgSet")
}
func (unimplemented) MemAgentCompactSet(context.Context, *pb.MemAgentCompactConfig) (*emptypb.Empty, error) {
	return nil, notImplemented("MemAgentCompactSet")
}
func (unimplemented) CreateSandbox(context.Context, *pb.CreateSandboxRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("CreateSandbox")
}
func (unimplemented) DestroySandbox(context.Context, *pb.DestroySandboxRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("DestroySandbox")
}
func (unimplemented) OnlineCPUMem(context.Context, *pb.OnlineCPUMemRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("OnlineCPUMem")
}
func (unimplemented) ReseedRandomDev(context.Context, *pb.ReseedRandomDevRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("ReseedRandomDev")
}
func (unimplemented) GetGuestDetails(context.Context, *pb.GuestDetailsRequest) (*pb.GuestDetailsResponse, error) {
	return nil, notImplemented("GetGuestDetails")
}
func (unimplemented) MemHotplugByProbe(context.Context, *pb.MemHotplugByProbeRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("MemHotplugByProbe")
}
func (unimplemented) SetGuestDateTime(context.Context, *pb.SetGuestDateTimeRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("SetGuestDateTime")
}
func (unimplemented) CopyFile(context.Context, *pb.CopyFileRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("CopyFile")
}
func (unimplemented) GetOOMEvent(context.Context, *pb.GetOOMEventRequest) (*pb.OOMEvent, error) {
	return nil, notImplemented("GetOOMEvent")
}
func (unimplemented) AddSwap(context.Context, *pb.AddSwapRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("AddSwap")
}
func (unimplemented) GetVolumeStats(context.Context, *pb.VolumeStatsRequest) (*pb.VolumeStatsResponse, error) {
	return nil, notImplemented("GetVolumeStats")
}
func (unimplemented) ResizeVolume(context.Context, *pb.ResizeVolumeRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("ResizeVolume")
}
func (unimplemented) AddSwapPath(context.Context, *pb.AddSwapPathRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("AddSwapPath")
}
func (unimplemented) GetDiagnosticData(context.Context, *pb.GetDiagnosticDataRequest) (*pb.GetDiagnosticDataResponse, error) {
	return nil, notImplemented("GetDiagnosticData")
}
func (unimplemented) SetPolicy(context.Context, *pb.SetPolicyRequest) (*emptypb.Empty, error) {
	return nil, notImplemented("SetPolicy")
}
