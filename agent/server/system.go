package server

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// System is the guest's clock and entropy pool (initsys's system calls in
// the guest; the wiring package injects them).
type System interface {
	// SetTime sets the wall clock; it validates before any system call.
	SetTime(sec, usec int64) error
	// ReseedRandom adds data to the kernel's entropy pool.
	ReseedRandom(data []byte) error
}

// systemHandlers serves the clock and entropy calls.
type systemHandlers struct {
	sys System
}

func (h *systemHandlers) SetGuestDateTime(_ context.Context, req *pb.SetGuestDateTimeRequest) (*emptypb.Empty, error) {
	return empty(h.sys.SetTime(req.Sec, req.Usec))
}

func (h *systemHandlers) ReseedRandomDev(_ context.Context, req *pb.ReseedRandomDevRequest) (*emptypb.Empty, error) {
	return empty(h.sys.ReseedRandom(req.Data))
}
