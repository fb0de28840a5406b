package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// maxProbeAddrs bounds one MemHotplugByProbe request: 64Ki blocks of the
// smallest block size (128 MiB on x86) is 8 TiB, more than any sandbox VM.
const maxProbeAddrs = 1 << 16

// Hotplug is what the hot-plug handlers need; *hotplug.Onliner
// implements it.
type Hotplug interface {
	OnlineCPUMem(ctx context.Context, nbCPUs uint32, cpuOnly bool) error
	MemHotplugByProbe(addrs []uint64) error
	MemoryInfo(blockSize, probe bool) (size uint64, probeOK bool, err error)
}

// hotplugHandlers answers CPU and memory hot-plug.
type hotplugHandlers struct {
	onliner Hotplug
}

// OnlineCPUMem onlines hot-plugged CPUs and memory. It always completes
// before answering, whatever req.Wait says: the Kata runtime sends
// Wait=false yet starts containers right after, and only a synchronous
// answer can report a failure.
func (h *hotplugHandlers) OnlineCPUMem(ctx context.Context, req *pb.OnlineCPUMemRequest) (*emptypb.Empty, error) {
	if err := h.onliner.OnlineCPUMem(ctx, req.GetNbCpus(), req.GetCpuOnly()); err != nil {
		return nil, fmt.Errorf("online CPUs and memory (nb_cpus=%d, cpu_only=%t): %w", req.GetNbCpus(), req.GetCpuOnly(), err)
	}
	return &emptypb.Empty{}, nil
}

// MemHotplugByProbe adds memory at the given physical addresses through the
// kernel's probe interface.
func (h *hotplugHandlers) MemHotplugByProbe(ctx context.Context, req *pb.MemHotplugByProbeRequest) (*emptypb.Empty, error) {
	addrs := req.GetMemHotplugProbeAddr()
	if len(addrs) > maxProbeAddrs {
		return nil, fmt.Errorf("memHotplugProbeAddr: %d addresses, at most %d accepted: %w", len(addrs), maxProbeAddrs, errdefs.ErrInvalidArgument)
	}
	if err := h.onliner.MemHotplugByProbe(addrs); err != nil {
		return nil, fmt.Errorf("memory hot-plug by probe: %w", err)
	}
	return &emptypb.Empty{}, nil
}
