package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// Network is what the network handlers need; *network.Manager implements
// it. Implementations validate their input and return errdefs-classed
// errors.
type Network interface {
	UpdateInterface(ctx context.Context, iface *typespb.Interface) (*typespb.Interface, error)
	UpdateRoutes(ctx context.Context, routes []*typespb.Route) ([]*typespb.Route, error)
	ListInterfaces(ctx context.Context) ([]*typespb.Interface, error)
	ListRoutes(ctx context.Context) ([]*typespb.Route, error)
	AddARPNeighbors(ctx context.Context, neighs []*typespb.ARPNeighbor) error
	GetIPTables(ctx context.Context, ipv6 bool) ([]byte, error)
	SetIPTables(ctx context.Context, ipv6 bool, data []byte) ([]byte, error)
}

// networkHandlers serve the interface, route, neighbour and iptables
// calls.
type networkHandlers struct {
	net Network
}

func (h *networkHandlers) UpdateInterface(ctx context.Context, req *pb.UpdateInterfaceRequest) (*typespb.Interface, error) {
	if req.GetInterface() == nil {
		return nil, fmt.Errorf("UpdateInterface: interface is missing: %w", errdefs.ErrInvalidArgument)
	}
	return h.net.UpdateInterface(ctx, req.GetInterface())
}

func (h *networkHandlers) UpdateRoutes(ctx context.Context, req *pb.UpdateRoutesRequest) (*pb.Routes, error) {
	// No routes message is malformed (upstream refuses it too); only a
	// present, empty list means an empty table.
	if req.GetRoutes() == nil {
		return nil, fmt.Errorf("UpdateRoutes: routes message is missing: %w", errdefs.ErrInvalidArgument)
	}
	rs, err := h.net.UpdateRoutes(ctx, req.GetRoutes().GetRoutes())
	if err != nil {
		return nil, err
	}
	return &pb.Routes{Routes: rs}, nil
}

func (h *networkHandlers) ListInterfaces(ctx context.Context, _ *pb.ListInterfacesRequest) (*pb.Interfaces, error) {
	ifs, err := h.net.ListInterfaces(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.Interfaces{Interfaces: ifs}, nil
}

func (h *networkHandlers) ListRoutes(ctx context.Context, _ *pb.ListRoutesRequest) (*pb.Routes, error) {
	rs, err := h.net.ListRoutes(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.Routes{Routes: rs}, nil
}

func (h *networkHandlers) AddARPNeighbors(ctx context.Context, req *pb.AddARPNeighborsRequest) (*emptypb.Empty, error) {
	if req.GetNeighbors() == nil {
		return nil, fmt.Errorf("AddARPNeighbors: neighbors message is missing: %w", errdefs.ErrInvalidArgument)
	}
	if err := h.net.AddARPNeighbors(ctx, req.GetNeighbors().GetARPNeighbors()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (h *networkHandlers) GetIPTables(ctx context.Context, req *pb.GetIPTablesRequest) (*pb.GetIPTablesResponse, error) {
	data, err := h.net.GetIPTables(ctx, req.GetIsIpv6())
	if err != nil {
		return nil, err
	}
	return &pb.GetIPTablesResponse{Data: data}, nil
}

func (h *networkHandlers) SetIPTables(ctx context.Context, req *pb.SetIPTablesRequest) (*pb.SetIPTablesResponse, error) {
	data, err := h.net.SetIPTables(ctx, req.GetIsIpv6(), req.GetData())
	if err != nil {
		return nil, err
	}
	return &pb.SetIPTablesResponse{Data: data}, nil
}
