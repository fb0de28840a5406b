package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

func TestParseRouteSpec(t *testing.T) {
	cases := map[string]*typespb.Route{
		"default via 10.0.0.1 dev eth0":                  {Gateway: "10.0.0.1", Device: "eth0"},
		"10.0.0.0/24 dev eth0 scope link src 10.0.0.2":   {Dest: "10.0.0.0/24", Device: "eth0", Scope: 253, Source: "10.0.0.2"},
		"default via fd00::1 dev eth0":                   {Gateway: "fd00::1", Device: "eth0", Family: typespb.IPFamily_v6},
		"default dev eth0 inet6":                         {Device: "eth0", Family: typespb.IPFamily_v6},
		"10.50.0.0/16 via 10.99.0.1 dev eth0 onlink":     {Dest: "10.50.0.0/16", Gateway: "10.99.0.1", Device: "eth0", Flags: 4},
		"fd01::/64 dev eth0":                             {Dest: "fd01::/64", Device: "eth0", Family: typespb.IPFamily_v6},
		"192.168.0.0/16 via 10.0.0.1 dev eth0 scope 200": {Dest: "192.168.0.0/16", Gateway: "10.0.0.1", Device: "eth0", Scope: 200},
	}
	for spec, want := range cases {
		got, err := parseRouteSpec(spec)
		if err != nil {
			t.Errorf("%q: %v", spec, err)
			continue
		}
		if !proto.Equal(got, want) {
			t.Errorf("%q = %v, want %v", spec, got, want)
		}
		// What list-routes prints parses back to the same route.
		back, err := parseRouteSpec(routeString(got))
		if err != nil || !proto.Equal(back, got) {
			t.Errorf("%q printed as %q, parsed back as %v (%v)", spec, routeString(got), back, err)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/24", "default via", "default dev eth0 scope bogus", "default dev eth0 metric 5"} {
		if _, err := parseRouteSpec(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestInterfaceFromFlags(t *testing.T) {
	i, err := interfaceFromFlags([]string{"--hwaddr", "02:00:00:00:00:01", "--name", "eth0", "--mtu", "1400", "--addr", "10.0.0.2/24", "--addr", "fd00::2/64", "--noarp"})
	if err != nil {
		t.Fatal(err)
	}
	want := &typespb.Interface{HwAddr: "02:00:00:00:00:01", Name: "eth0", Mtu: 1400, RawFlags: 0x80, IPAddresses: []*typespb.IPAddress{
		{Address: "10.0.0.2", Mask: "24"}, {Family: typespb.IPFamily_v6, Address: "fd00::2", Mask: "64"}}}
	if !proto.Equal(i, want) {
		t.Errorf("got %v", i)
	}
	file := filepath.Join(t.TempDir(), "if.json")
	os.WriteFile(file, []byte(`{"hwAddr":"02:00:00:00:00:01","name":"eth1","mtu":"1500","IPAddresses":[{"address":"10.1.0.2","mask":"24"}],"raw_flags":128}`), 0o644)
	i, err = interfaceFromFlags([]string{"--file", file})
	if err != nil || i.Name != "eth1" || i.Mtu != 1500 || i.RawFlags != 128 || len(i.IPAddresses) != 1 {
		t.Errorf("from file: %v %v", i, err)
	}
	for _, bad := range [][]string{
		{"--name", "eth0", "--mtu", "1400"},
		{"--hwaddr", "02:00:00:00:00:01", "--name", "eth0", "--mtu", "1400", "--addr", "10.0.0.2"},
		{"--file", file, "--name", "x"},
		{"--file", filepath.Join(t.TempDir(), "missing.json")},
	} {
		if _, err := interfaceFromFlags(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestNetworkCommands checks what the network commands send and print; the
// same commands against the real agent and netlink run in
// tests/integration (TestAgentctlNetworkAgainstNamespace).
func TestNetworkCommands(t *testing.T) {
	f := &fakeAgent{}
	eth0 := &typespb.Interface{Name: "eth0", HwAddr: "02:00:00:00:0d:01", Mtu: 1450,
		IPAddresses: []*typespb.IPAddress{{Address: "10.4.0.2", Mask: "24"}}}
	route := &typespb.Route{Dest: "10.6.0.0/16", Device: "eth0", Scope: 253}
	addr := serveFake(t, f, map[string]ttrpc.Method{
		"UpdateInterface": method(f, func(r *pb.UpdateInterfaceRequest) (any, error) {
			if r.Interface.HwAddr != eth0.HwAddr {
				return nil, fmt.Errorf("Link not found (Address: %s): not found", r.Interface.HwAddr)
			}
			return r.Interface, nil
		}),
		"UpdateRoutes": method(f, func(r *pb.UpdateRoutesRequest) (any, error) {
			if len(r.Routes.Routes) == 1 {
				return nil, errors.New("gateway 10.200.0.1 is not reachable: failed precondition")
			}
			return r.Routes, nil
		}),
		"ListRoutes": method(f, func(*pb.ListRoutesRequest) (any, error) { return &pb.Routes{Routes: []*typespb.Route{route}}, nil }),
		"ListInterfaces": method(f, func(*pb.ListInterfacesRequest) (any, error) {
			return &pb.Interfaces{Interfaces: []*typespb.Interface{eth0}}, nil
		}),
		"AddARPNeighbors": method(f, func(*pb.AddARPNeighborsRequest) (any, error) { return &emptypb.Empty{}, nil }),
	})
	run := func(args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		rc := agentctl(append([]string{"--addr", addr}, args...), &stdout, &stderr)
		return stdout.String(), stderr.String(), rc
	}
	last := func() proto.Message {
		rs := f.requests()
		return rs[len(rs)-1].(proto.Message)
	}
	if o, e, rc := run("update-interface", "--hwaddr", "02:00:00:00:0d:01", "--name", "eth0", "--mtu", "1450", "--addr", "10.4.0.2/24"); rc != 0 || !strings.Contains(o, "eth0") {
		t.Fatalf("update-interface rc=%d out=%q err=%q", rc, o, e)
	}
	if want := (&pb.UpdateInterfaceRequest{Interface: eth0}); !proto.Equal(last(), want) {
		t.Errorf("update-interface sent %v, want %v", last(), want)
	}
	if o, e, rc := run("update-routes", "default via 10.4.0.1 dev eth0", "10.6.0.0/16 dev eth0 scope link"); rc != 0 || !strings.Contains(o, "default via 10.4.0.1 dev eth0") {
		t.Fatalf("update-routes rc=%d out=%q err=%q", rc, o, e)
	}
	if want := (&pb.UpdateRoutesRequest{Routes: &pb.Routes{Routes: []*typespb.Route{{Gateway: "10.4.0.1", Device: "eth0"}, route}}}); !proto.Equal(last(), want) {
		t.Errorf("update-routes sent %v, want %v", last(), want)
	}
	o, _, rc := run("list-routes")
	if rc != 0 || !strings.Contains(o, "10.6.0.0/16 dev eth0 scope link") {
		t.Errorf("list-routes: %q", o)
	}
	o, _, rc = run("list-interfaces", "--json")
	var ifs pb.Interfaces
	if err := protojson.Unmarshal([]byte(o), &ifs); rc != 0 || err != nil {
		t.Fatalf("list-interfaces --json: rc=%d %v: %q", rc, err, o)
	}
	if len(ifs.Interfaces) != 1 || !proto.Equal(ifs.Interfaces[0], eth0) {
		t.Errorf("list-interfaces --json: %v", &ifs)
	}
	if _, e, rc := run("add-arp", "10.4.0.1", "02:00:00:00:0d:09", "eth0"); rc != 0 {
		t.Errorf("add-arp: %q", e)
	}
	want := &pb.AddARPNeighborsRequest{Neighbors: &pb.ARPNeighbors{ARPNeighbors: []*typespb.ARPNeighbor{{
		ToIPAddress: &typespb.IPAddress{Address: "10.4.0.1"}, Lladdr: "02:00:00:00:0d:09", Device: "eth0"}}}}
	if !proto.Equal(last(), want) {
		t.Errorf("add-arp sent %v, want %v", last(), want)
	}
	// Errors reach the user with the agent's explanation.
	_, e, rc := run("update-interface", "--hwaddr", "02:00:00:00:0d:77", "--name", "eth9", "--mtu", "1500")
	if rc == 0 || !strings.Contains(e, "Link not found (Address: 02:00:00:00:0d:77)") {
		t.Errorf("unknown hwaddr: rc=%d %q", rc, e)
	}
	_, e, rc = run("update-routes", "default via 10.200.0.1 dev eth0")
	if rc == 0 || !strings.Contains(e, "not reachable") {
		t.Errorf("unreachable gateway: rc=%d %q", rc, e)
	}
}
