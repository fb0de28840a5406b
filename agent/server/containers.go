package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/agent/sandbox"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/ocipb"
)

// containerHandlers serves the sandbox, container, process and stdio RPCs
// by translating them for package sandbox.
type containerHandlers struct {
	sb       *sandbox.Sandbox
	streams  streamSource
	agentLog AgentLog // nil: GetDiagnosticData "agent_log" refused
}

// streamSource hands out the stream-port connections a request names: a
// *container.StreamBroker when agent.passfd_listener_port is set, else
// noStreams.
type streamSource interface {
	Take(ctx context.Context, stdin, stdout, stderr uint32) (container.Streams, error)
}

// noStreams refuses requests that name stream ports.
type noStreams struct{}

func (noStreams) Take(context.Context, uint32, uint32, uint32) (container.Streams, error) {
	return container.Streams{}, fmt.Errorf("stdio over vsock ports is not enabled (agent.passfd_listener_port); use ReadStdout/WriteStdin: %w", errdefs.ErrNotImplemented)
}

// takeStreams claims the stream-port connections a request names.
func (h *containerHandlers) takeStreams(ctx context.Context, stdin, stdout, stderr uint32) (container.Streams, error) {
	if stdin == 0 && stdout == 0 && stderr == 0 {
		return container.Streams{}, nil
	}
	return h.streams.Take(ctx, stdin, stdout, stderr)
}

func (h *containerHandlers) CreateSandbox(ctx context.Context, req *pb.CreateSandboxRequest) (*emptypb.Empty, error) {
	if len(req.KernelModules) > 0 {
		return nil, fmt.Errorf("loading kernel modules is not supported (the guest kernel has no modules): %w", errdefs.ErrNotImplemented)
	}
	err := h.sb.CreateSandbox(ctx, sandbox.CreateSandboxRequest{
		ID: req.SandboxId, Hostname: req.Hostname, DNS: req.Dns, Storages: req.Storages,
		GuestHookPath: req.GuestHookPath,
	})
	return empty(err)
}

func (h *containerHandlers) DestroySandbox(ctx context.Context, _ *pb.DestroySandboxRequest) (*emptypb.Empty, error) {
	// With Options.StopAfterDestroy, the server stops once the host has
	// taken this reply (see Server.Serve).
	if err := h.sb.DestroySandbox(ctx); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (h *containerHandlers) CreateContainer(ctx context.Context, req *pb.CreateContainerRequest) (*emptypb.Empty, error) {
	st, err := h.takeStreams(ctx, req.StdinPort, req.StdoutPort, req.StderrPort)
	if err != nil {
		return nil, err
	}
	defer st.Close() // on the error paths; otherwise the process has them
	if req.ExecId != "" && req.ExecId != req.ContainerId {
		return nil, hostinput.Invalid("container %q: exec id %q of the init process must equal the container id", req.ContainerId, req.ExecId)
	}
	if req.OCI == nil {
		return nil, hostinput.Invalid("container %q: no OCI spec", req.ContainerId)
	}
	spec, err := ocipb.ToSpec(req.OCI)
	if err != nil {
		return nil, hostinput.Invalid("container %q: %v", req.ContainerId, err)
	}
	return empty(h.sb.CreateContainer(ctx, sandbox.CreateContainerRequest{
		ID: req.ContainerId, Spec: spec, Storages: req.Storages, Devices: req.Devices, SandboxPID: req.SandboxPidns,
		Streams: st,
	}))
}

func (h *containerHandlers) StartContainer(_ context.Context, req *pb.StartContainerRequest) (*emptypb.Empty, error) {
	return empty(h.sb.StartContainer(req.ContainerId))
}

func (h *containerHandlers) RemoveContainer(ctx context.Context, req *pb.RemoveContainerRequest) (*emptypb.Empty, error) {
	return empty(h.sb.RemoveContainer(ctx, req.ContainerId, time.Duration(req.Timeout)*time.Second))
}

func (h *containerHandlers) ExecProcess(ctx context.Context, req *pb.ExecProcessRequest) (*emptypb.Empty, error) {
	st, err := h.takeStreams(ctx, req.StdinPort, req.StdoutPort, req.StderrPort)
	if err != nil {
		return nil, err
	}
	defer st.Close() // on the error paths; otherwise the process has them
	if req.Process == nil {
		return nil, hostinput.Invalid("exec %q in container %q: no process", req.ExecId, req.ContainerId)
	}
	return empty(h.sb.ExecProcess(req.ContainerId, req.ExecId, ocipb.ToProcess(req.Process), st))
}

func (h *containerHandlers) SignalProcess(_ context.Context, req *pb.SignalProcessRequest) (*emptypb.Empty, error) {
	return empty(h.sb.SignalProcess(req.ContainerId, req.ExecId, req.Signal))
}

func (h *containerHandlers) WaitProcess(ctx context.Context, req *pb.WaitProcessRequest) (*pb.WaitProcessResponse, error) {
	code, err := h.sb.WaitProcess(ctx, req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	return &pb.WaitProcessResponse{Status: code}, nil
}

func (h *containerHandlers) PauseContainer(_ context.Context, req *pb.PauseContainerRequest) (*emptypb.Empty, error) {
	c, err := h.sb.Container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	return empty(c.Pause())
}

func (h *containerHandlers) ResumeContainer(_ context.Context, req *pb.ResumeContainerRequest) (*emptypb.Empty, error) {
	c, err := h.sb.Container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	return empty(c.Resume())
}

func (h *containerHandlers) UpdateContainer(_ context.Context, req *pb.UpdateContainerRequest) (*emptypb.Empty, error) {
	c, err := h.sb.Container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if req.Resources == nil {
		return nil, hostinput.Invalid("container %q: no resources to update", req.ContainerId)
	}
	return empty(c.Update(ocipb.ToResources(req.Resources)))
}

func (h *containerHandlers) StatsContainer(_ context.Context, req *pb.StatsContainerRequest) (*pb.StatsContainerResponse, error) {
	c, err := h.sb.Container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	st, err := c.Stats()
	if err != nil {
		return nil, err
	}
	return &pb.StatsContainerResponse{CgroupStats: cgroupStats(st.CgroupStats)}, nil
}

func (h *containerHandlers) RemoveStaleVirtiofsShareMounts(context.Context, *pb.RemoveStaleVirtiofsShareMountsRequest) (*emptypb.Empty, error) {
	return empty(h.sb.RemoveStaleVirtiofsShareMounts())
}

func (h *containerHandlers) GetOOMEvent(ctx context.Context, _ *pb.GetOOMEventRequest) (*pb.OOMEvent, error) {
	id, err := h.sb.GetOOMEvent(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.OOMEvent{ContainerId: id}, nil
}

func (h *containerHandlers) WriteStdin(_ context.Context, req *pb.WriteStreamRequest) (*pb.WriteStreamResponse, error) {
	_, p, err := h.sb.Process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	n, err := p.WriteStdin(req.Data)
	if err != nil {
		return nil, err
	}
	return &pb.WriteStreamResponse{Len: uint32(n)}, nil
}

func (h *containerHandlers) ReadStdout(ctx context.Context, req *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error) {
	return h.read(ctx, req, false)
}

func (h *containerHandlers) ReadStderr(ctx context.Context, req *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error) {
	return h.read(ctx, req, true)
}

// read answers zero-length data at end of stream, which the runtime takes
// as EOF.
func (h *containerHandlers) read(ctx context.Context, req *pb.ReadStreamRequest, stderr bool) (*pb.ReadStreamResponse, error) {
	// A fresh buffer: the reply owns it until ttrpc has marshalled it,
	// after this returns. (Reads served by the stdio path, stdio.go, use
	// pooled ones.)
	buf := make([]byte, container.ReadLen(int(req.Len)))
	n, err := h.readInto(ctx, req.ContainerId, req.ExecId, buf, stderr)
	if err != nil {
		return nil, err
	}
	return &pb.ReadStreamResponse{Data: buf[:n]}, nil
}

// readInto reads a process's output into buf; at the end of the stream it
// reads nothing, without error, and lets go of an exited exec.
func (h *containerHandlers) readInto(ctx context.Context, containerID, execID string, buf []byte, stderr bool) (int, error) {
	n, settle, err := h.readStream(ctx, containerID, execID, buf, stderr, true)
	settle(true)
	return n, err
}

// readStream is readInto for a reply the caller sends itself, and calls
// settle for (container.Process.ReadForReply); without wait, for output
// already there only: where it would wait, it reads nothing and returns
// container.ErrNoOutputYet.
func (h *containerHandlers) readStream(ctx context.Context, containerID, execID string, buf []byte, stderr, wait bool) (int, func(sent bool), error) {
	c, p, err := h.sb.Process(containerID, execID)
	if err != nil {
		return 0, noSettle, err
	}
	n, settle, err := p.ReadForReply(ctx, buf, stderr, wait)
	if errors.Is(err, io.EOF) {
		if p.Exited() {
			c.Release(execID)
		}
		return 0, settle, nil
	}
	return n, settle, err
}

// noSettle is the settle of a read that did not happen.
func noSettle(bool) {}

func (h *containerHandlers) CloseStdin(_ context.Context, req *pb.CloseStdinRequest) (*emptypb.Empty, error) {
	_, p, err := h.sb.Process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	return empty(p.CloseStdin())
}

func (h *containerHandlers) TtyWinResize(_ context.Context, req *pb.TtyWinResizeRequest) (*emptypb.Empty, error) {
	_, p, err := h.sb.Process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	return empty(p.Resize(req.Row, req.Column))
}

func empty(err error) (*emptypb.Empty, error) {
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// cgroupStats converts libcontainer's cgroup statistics to the protocol's.
func cgroupStats(s *cgroups.Stats) *pb.CgroupStats {
	if s == nil {
		return nil
	}
	cpu := s.CpuStats
	mem := s.MemoryStats
	md := func(d cgroups.MemoryData) *pb.MemoryData {
		return &pb.MemoryData{Usage: d.Usage, MaxUsage: d.MaxUsage, Failcnt: d.Failcnt, Limit: d.Limit}
	}
	blk := func(es []cgroups.BlkioStatEntry) []*pb.BlkioStatsEntry {
		var out []*pb.BlkioStatsEntry
		for _, e := range es {
			out = append(out, &pb.BlkioStatsEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
		}
		return out
	}
	out := &pb.CgroupStats{
		CpuStats: &pb.CpuStats{
			CpuUsage: &pb.CpuUsage{
				TotalUsage: cpu.CpuUsage.TotalUsage, PercpuUsage: cpu.CpuUsage.PercpuUsage,
				UsageInKernelmode: cpu.CpuUsage.UsageInKernelmode, UsageInUsermode: cpu.CpuUsage.UsageInUsermode,
			},
			ThrottlingData: &pb.ThrottlingData{
				Periods: cpu.ThrottlingData.Periods, ThrottledPeriods: cpu.ThrottlingData.ThrottledPeriods,
				ThrottledTime: cpu.ThrottlingData.ThrottledTime,
			},
		},
		MemoryStats: &pb.MemoryStats{
			Cache: mem.Cache, Usage: md(mem.Usage), SwapUsage: md(mem.SwapUsage), KernelUsage: md(mem.KernelUsage),
			UseHierarchy: mem.UseHierarchy, Stats: mem.Stats,
		},
		PidsStats: &pb.PidsStats{Current: s.PidsStats.Current, Limit: s.PidsStats.Limit},
		BlkioStats: &pb.BlkioStats{
			IoServiceBytesRecursive: blk(s.BlkioStats.IoServiceBytesRecursive),
			IoServicedRecursive:     blk(s.BlkioStats.IoServicedRecursive),
			IoQueuedRecursive:       blk(s.BlkioStats.IoQueuedRecursive),
			IoServiceTimeRecursive:  blk(s.BlkioStats.IoServiceTimeRecursive),
			IoWaitTimeRecursive:     blk(s.BlkioStats.IoWaitTimeRecursive),
			IoMergedRecursive:       blk(s.BlkioStats.IoMergedRecursive),
			IoTimeRecursive:         blk(s.BlkioStats.IoTimeRecursive),
			SectorsRecursive:        blk(s.BlkioStats.SectorsRecursive),
		},
	}
	if len(s.HugetlbStats) > 0 {
		out.HugetlbStats = map[string]*pb.HugetlbStats{}
		for k, v := range s.HugetlbStats {
			out.HugetlbStats[k] = &pb.HugetlbStats{Usage: v.Usage, MaxUsage: v.MaxUsage, Failcnt: v.Failcnt}
		}
	}
	return out
}
