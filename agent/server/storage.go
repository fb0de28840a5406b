package server

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sandbox-guest/sandbox-guest/agent/storage"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// Storage is what the storage handlers need; *storage.Manager implements
// it.
type Storage interface {
	// UpdateEphemeral resizes mounted ephemeral storages.
	UpdateEphemeral(storages []*pb.Storage) error
	// VolumeStats measures the volume at a guest path.
	VolumeStats(path string) (storage.VolumeUsage, error)
	// ResizeVolume grows the filesystem of the block storage mounted at
	// path to size bytes.
	ResizeVolume(path string, size uint64) error
}

// storageHandlers serves the calls about mounted storages.
type storageHandlers struct {
	storage Storage
}

func (h *storageHandlers) UpdateEphemeralMounts(_ context.Context, req *pb.UpdateEphemeralMountsRequest) (*emptypb.Empty, error) {
	return empty(h.storage.UpdateEphemeral(req.Storages))
}

func (h *storageHandlers) GetVolumeStats(_ context.Context, req *pb.VolumeStatsRequest) (*pb.VolumeStatsResponse, error) {
	u, err := h.storage.VolumeStats(req.VolumeGuestPath)
	if err != nil {
		return nil, err
	}
	usage := func(unit pb.VolumeUsage_Unit, u storage.Usage) *pb.VolumeUsage {
		return &pb.VolumeUsage{Unit: unit, Total: u.Total, Available: u.Available, Used: u.Used}
	}
	return &pb.VolumeStatsResponse{
		Usage:           []*pb.VolumeUsage{usage(pb.VolumeUsage_BYTES, u.Bytes), usage(pb.VolumeUsage_INODES, u.Inodes)},
		VolumeCondition: &pb.VolumeCondition{},
	}, nil
}

func (h *storageHandlers) ResizeVolume(_ context.Context, req *pb.ResizeVolumeRequest) (*emptypb.Empty, error) {
	return empty(h.storage.ResizeVolume(req.VolumeGuestPath, req.Size))
}

// fileHandlers serves CopyFile: the runtime's copies into the share when
// the guest has no shared filesystem.
type fileHandlers struct {
	copier *storage.FileCopier
}

func (h *fileHandlers) CopyFile(_ context.Context, req *pb.CopyFileRequest) (*emptypb.Empty, error) {
	return empty(h.copier.Copy(storage.CopyRequest{
		Path: req.Path, FileSize: req.FileSize, FileMode: req.FileMode, DirMode: req.DirMode,
		UID: req.Uid, GID: req.Gid, Offset: req.Offset, Data: req.Data,
	}))
}
