package server

import (
	"context"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"

	"github.com/sandbox-guest/sandbox-guest/agent/storage"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

type fakeSwap struct {
	slots []uint32
	path  string
	err   error
}

func (f *fakeSwap) AddPCI(_ context.Context, slots []uint32) error { f.slots = slots; return f.err }
func (f *fakeSwap) AddPath(p string) error                         { f.path = p; return f.err }

func TestSwapHandlers(t *testing.T) {
	sw := &fakeSwap{}
	c := startServer(t, Options{Swap: sw})
	ctx := context.Background()
	if _, err := c.Agent.AddSwap(ctx, &pb.AddSwapRequest{PCIPath: []uint32{2, 1}}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sw.slots) != "[2 1]" {
		t.Fatalf("slots %v", sw.slots)
	}
	if _, err := c.Agent.AddSwapPath(ctx, &pb.AddSwapPathRequest{Path: "/dev/vdc"}); err != nil || sw.path != "/dev/vdc" {
		t.Fatalf("path %q err %v", sw.path, err)
	}
	sw.err = fmt.Errorf("swap path x: %w", errdefs.ErrInvalidArgument)
	_, err := c.Agent.AddSwapPath(ctx, &pb.AddSwapPathRequest{Path: "x"})
	wantCode(t, err, codes.InvalidArgument)
	sw.err = fmt.Errorf("swap device: %w", context.DeadlineExceeded)
	_, err = c.Agent.AddSwap(ctx, &pb.AddSwapRequest{PCIPath: []uint32{9}})
	wantCode(t, err, codes.DeadlineExceeded)
}

func TestResizeVolumeHandler(t *testing.T) {
	root := t.TempDir()
	c := startServer(t, Options{Storage: storage.New(storage.Config{Root: root})})
	ctx := context.Background()
	_, err := c.Agent.ResizeVolume(ctx, &pb.ResizeVolumeRequest{VolumeGuestPath: root + "/vol", Size: 1 << 30})
	wantStatus(t, err, codes.NotFound, "no storage is mounted at "+root+"/vol")
	_, err = c.Agent.ResizeVolume(ctx, &pb.ResizeVolumeRequest{VolumeGuestPath: "/etc", Size: 1 << 30})
	wantCode(t, err, codes.InvalidArgument)
}
