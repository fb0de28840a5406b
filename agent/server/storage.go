package server

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sandbox-guest/sandbox-guest/agent/initsys"
	"github.com/sandbox-guest/sandbox-guest/agent/storage"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// EphemeralUpdater resizes mounted ephemeral storages (storage.Manager).
type EphemeralUpdater interface {
	UpdateEphemeral(storages []*pb.Storage) error
}

// storageHandlers serves the file, clock, entropy and volume calls.
type storageHandlers struct {
	ephemeral EphemeralUpdater
	copier    *storage.FileCopier
	setTime   func(sec, usec int64) error
	reseed    func(data []byte) error
}

func newStorageHandlers(opts Options) *storageHandlers {
	h := &storageHandlers{
		ephemeral: opts.Storage,
		copier:    &storage.FileCopier{Root: opts.CopyFileRoot},
		setTime:   opts.SetTime,
		reseed:    opts.ReseedRandom,
	}
	if h.setTime == nil {
		h.setTime = initsys.SetTime
	}
	if h.reseed == nil {
		h.reseed = initsys.ReseedRandom
	}
	return h
}

func (h *storageHandlers) CopyFile(_ context.Context, req *pb.CopyFileRequest) (*emptypb.Empty, error) {
	err := h.copier.Copy(storage.CopyRequest{
		Path: req.Path, FileSize: req.FileSize, FileMode: req.FileMode, DirMode: req.DirMode,
		UID: req.Uid, GID: req.Gid, Offset: req.Offset, Data: req.Data,
	})
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (h *storageHandlers) SetGuestDateTime(_ context.Context, req *pb.SetGuestDateTimeRequest) (*emptypb.Empty, error) {
	if err := h.setTime(req.Sec, req.Usec); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (h *storageHandlers) ReseedRandomDev(_ context.Context, req *pb.ReseedRandomDevRequest) (*emptypb.Empty, error) {
	if err := h.reseed(req.Data); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (h *storageHandlers) UpdateEphemeralMounts(_ context.Context, req *pb.UpdateEphemeralMountsRequest) (*emptypb.Empty, error) {
	if h.ephemeral == nil {
		return nil, fmt.Errorf("UpdateEphemeralMounts: no storage manager: %w", errdefs.ErrUnavailable)
	}
	if err := h.ephemeral.UpdateEphemeral(req.Storages); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (h *storageHandlers) GetVolumeStats(_ context.Context, req *pb.VolumeStatsRequest) (*pb.VolumeStatsResponse, error) {
	p := req.VolumeGuestPath
	if p == "" || !filepath.IsAbs(p) {
		return nil, fmt.Errorf("volume guest path %q is not absolute: %w", p, errdefs.ErrInvalidArgument)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		if err == unix.ENOENT {
			return nil, fmt.Errorf("volume %s: %w", p, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("statfs %s: %w", p, err)
	}
	bsize := uint64(st.Bsize)
	return &pb.VolumeStatsResponse{
		Usage: []*pb.VolumeUsage{
			{Unit: pb.VolumeUsage_BYTES, Total: st.Blocks * bsize, Available: st.Bavail * bsize, Used: (st.Blocks - st.Bfree) * bsize},
			{Unit: pb.VolumeUsage_INODES, Total: st.Files, Available: st.Ffree, Used: st.Files - st.Ffree},
		},
		VolumeCondition: &pb.VolumeCondition{Abnormal: false, Message: ""},
	}, nil
}
