package server

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// Swap makes disks and files swap areas; *swap.Manager implements it.
type Swap interface {
	// AddPCI waits for the disk at a PCI path (one slot per level) and
	// makes it swap.
	AddPCI(ctx context.Context, slots []uint32) error
	// AddPath makes a guest block device or file swap.
	AddPath(path string) error
}

// swapService: swap areas (swapHandlers).
type swapService interface {
	AddSwap(context.Context, *pb.AddSwapRequest) (*emptypb.Empty, error)
	AddSwapPath(context.Context, *pb.AddSwapPathRequest) (*emptypb.Empty, error)
}

// swapHandlers serves AddSwap and AddSwapPath.
type swapHandlers struct {
	swap Swap
}

func (h *swapHandlers) AddSwap(ctx context.Context, req *pb.AddSwapRequest) (*emptypb.Empty, error) {
	return empty(h.swap.AddPCI(ctx, req.PCIPath))
}

func (h *swapHandlers) AddSwapPath(_ context.Context, req *pb.AddSwapPathRequest) (*emptypb.Empty, error) {
	return empty(h.swap.AddPath(req.Path))
}
