package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// fakeNetwork records what the handlers pass and answers canned values.
type fakeNetwork struct {
	iface   *typespb.Interface
	routes  []*typespb.Route
	neighs  []*typespb.ARPNeighbor
	ipv6    bool
	data    []byte
	failure error
}

func (f *fakeNetwork) UpdateInterface(_ context.Context, i *typespb.Interface) (*typespb.Interface, error) {
	if f.failure != nil {
		return nil, f.failure
	}
	f.iface = i
	out := proto.Clone(i).(*typespb.Interface)
	out.Type = "veth"
	return out, nil
}

func (f *fakeNetwork) UpdateRoutes(_ context.Context, rs []*typespb.Route) ([]*typespb.Route, error) {
	if f.failure != nil {
		return nil, f.failure
	}
	f.routes = rs
	return rs, nil
}

func (f *fakeNetwork) ListInterfaces(context.Context) ([]*typespb.Interface, error) {
	return []*typespb.Interface{{Name: "lo", Mtu: 65536}, {Name: "eth0", Mtu: 1500, HwAddr: "02:00:00:00:00:01"}}, f.failure
}

func (f *fakeNetwork) ListRoutes(context.Context) ([]*typespb.Route, error) {
	return []*typespb.Route{{Dest: "0.0.0.0/0", Gateway: "10.0.0.1", Device: "eth0"}}, f.failure
}

func (f *fakeNetwork) AddARPNeighbors(_ context.Context, ns []*typespb.ARPNeighbor) error {
	f.neighs = ns
	return f.failure
}

func (f *fakeNetwork) GetIPTables(_ context.Context, v6 bool) ([]byte, error) {
	f.ipv6 = v6
	if f.failure != nil {
		return nil, f.failure
	}
	return []byte("*filter\nCOMMIT\n"), nil
}

func (f *fakeNetwork) SetIPTables(_ context.Context, v6 bool, data []byte) ([]byte, error) {
	f.ipv6, f.data = v6, data
	if f.failure != nil {
		return nil, f.failure
	}
	return []byte("restored"), nil
}

func TestNetworkHandlersTranslate(t *testing.T) {
	f := &fakeNetwork{}
	c := startServer(t, Options{Network: f})
	ctx := context.Background()

	in := &typespb.Interface{HwAddr: "02:00:00:00:00:01", Name: "eth0", Mtu: 1500,
		IPAddresses: []*typespb.IPAddress{{Address: "10.0.0.2", Mask: "24"}}}
	got, err := c.Agent.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{Interface: in})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(f.iface, in) || got.Type != "veth" || got.Name != "eth0" {
		t.Errorf("UpdateInterface passed %v, answered %v", f.iface, got)
	}

	rs := []*typespb.Route{{Dest: "10.0.0.0/24", Device: "eth0"}, {Gateway: "10.0.0.1", Device: "eth0"}}
	rr, err := c.Agent.UpdateRoutes(ctx, &pb.UpdateRoutesRequest{Routes: &pb.Routes{Routes: rs}})
	if err != nil || len(f.routes) != 2 || len(rr.Routes) != 2 || !proto.Equal(rr.Routes[1], rs[1]) {
		t.Errorf("UpdateRoutes: %v %v, passed %v", rr, err, f.routes)
	}
	// A present but empty list is an empty table.
	if _, err := c.Agent.UpdateRoutes(ctx, &pb.UpdateRoutesRequest{Routes: &pb.Routes{}}); err != nil || len(f.routes) != 0 {
		t.Errorf("UpdateRoutes with an empty list: %v, passed %v", err, f.routes)
	}

	ifs, err := c.Agent.ListInterfaces(ctx, &pb.ListInterfacesRequest{})
	if err != nil || len(ifs.Interfaces) != 2 || ifs.Interfaces[1].HwAddr != "02:00:00:00:00:01" {
		t.Errorf("ListInterfaces: %v %v", ifs, err)
	}
	lr, err := c.Agent.ListRoutes(ctx, &pb.ListRoutesRequest{})
	if err != nil || len(lr.Routes) != 1 || lr.Routes[0].Gateway != "10.0.0.1" {
		t.Errorf("ListRoutes: %v %v", lr, err)
	}

	nb := []*typespb.ARPNeighbor{{ToIPAddress: &typespb.IPAddress{Address: "10.0.0.1"}, Device: "eth0", Lladdr: "02:00:00:00:00:09"}}
	if _, err := c.Agent.AddARPNeighbors(ctx, &pb.AddARPNeighborsRequest{Neighbors: &pb.ARPNeighbors{ARPNeighbors: nb}}); err != nil || len(f.neighs) != 1 || f.neighs[0].Lladdr != "02:00:00:00:00:09" {
		t.Errorf("AddARPNeighbors: %v, passed %v", err, f.neighs)
	}

	g, err := c.Agent.GetIPTables(ctx, &pb.GetIPTablesRequest{IsIpv6: true})
	if err != nil || string(g.Data) != "*filter\nCOMMIT\n" || !f.ipv6 {
		t.Errorf("GetIPTables: %v %v v6=%v", g, err, f.ipv6)
	}
	s, err := c.Agent.SetIPTables(ctx, &pb.SetIPTablesRequest{IsIpv6: false, Data: []byte("rules")})
	if err != nil || string(s.Data) != "restored" || f.ipv6 || string(f.data) != "rules" {
		t.Errorf("SetIPTables: %v %v passed v6=%v %q", s, err, f.ipv6, f.data)
	}
}

func TestNetworkHandlerErrors(t *testing.T) {
	ctx := context.Background()
	// The runtime retries UpdateInterface on this text, so it must arrive intact.
	notFound := fmt.Errorf("update interface: Link not found (Address: 02:00:00:00:00:99): %w", errdefs.ErrNotFound)
	c := startServer(t, Options{Network: &fakeNetwork{failure: notFound}})
	_, err := c.Agent.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{Interface: &typespb.Interface{Name: "eth0"}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "Link not found (Address: 02:00:00:00:00:99)") {
		t.Errorf("UpdateInterface: %v", err)
	}
	_, err = c.Agent.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "interface is missing") {
		t.Errorf("UpdateInterface without interface: %v", err)
	}

	noIPT := fmt.Errorf("iptables-save is not in PATH: the guest image has no iptables: %w", errdefs.ErrNotImplemented)
	c = startServer(t, Options{Network: &fakeNetwork{failure: noIPT}})
	_, err = c.Agent.GetIPTables(ctx, &pb.GetIPTablesRequest{})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "no iptables") {
		t.Errorf("GetIPTables: %v", err)
	}
	bad := fmt.Errorf("route 0: gateway 10.9.0.1 is not reachable: %w", errdefs.ErrInvalidArgument)
	c = startServer(t, Options{Network: &fakeNetwork{failure: bad}})
	_, err = c.Agent.UpdateRoutes(ctx, &pb.UpdateRoutesRequest{Routes: &pb.Routes{}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "10.9.0.1") {
		t.Errorf("UpdateRoutes: %v", err)
	}
}

func TestNetworkUnconfiguredIsUnimplemented(t *testing.T) {
	c := startServer(t, Options{})
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"UpdateInterface": func() error {
			_, err := c.Agent.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{Interface: &typespb.Interface{}})
			return err
		},
		"UpdateRoutes":    func() error { _, err := c.Agent.UpdateRoutes(ctx, &pb.UpdateRoutesRequest{}); return err },
		"ListInterfaces":  func() error { _, err := c.Agent.ListInterfaces(ctx, &pb.ListInterfacesRequest{}); return err },
		"ListRoutes":      func() error { _, err := c.Agent.ListRoutes(ctx, &pb.ListRoutesRequest{}); return err },
		"AddARPNeighbors": func() error { _, err := c.Agent.AddARPNeighbors(ctx, &pb.AddARPNeighborsRequest{}); return err },
		"GetIPTables":     func() error { _, err := c.Agent.GetIPTables(ctx, &pb.GetIPTablesRequest{}); return err },
		"SetIPTables":     func() error { _, err := c.Agent.SetIPTables(ctx, &pb.SetIPTablesRequest{}); return err },
	} {
		err := call()
		if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A request without its sub-message is malformed, as upstream treats it:
// an UpdateRoutes with no routes message must not flush the table, and
// the network is not touched.
func TestNetworkHandlersRefuseMissingMessages(t *testing.T) {
	ctx := context.Background()
	f := &fakeNetwork{}
	c := startServer(t, Options{Network: f})
	for name, call := range map[string]func() error{
		"UpdateInterface": func() error {
			_, err := c.Agent.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{})
			return err
		},
		"UpdateRoutes": func() error {
			_, err := c.Agent.UpdateRoutes(ctx, &pb.UpdateRoutesRequest{})
			return err
		},
		"AddARPNeighbors": func() error {
			_, err := c.Agent.AddARPNeighbors(ctx, &pb.AddARPNeighborsRequest{})
			return err
		},
	} {
		err := call()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "missing") {
			t.Errorf("%s without its message: %v, want InvalidArgument naming the method", name, err)
		}
	}
	if f.iface != nil || f.routes != nil || f.neighs != nil {
		t.Errorf("network touched: %v %v %v", f.iface, f.routes, f.neighs)
	}
}
