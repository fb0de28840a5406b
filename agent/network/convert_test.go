package network

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"eth0", "a", "abcdefghijklmno", "veth-1_x.y"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "abcdefghijklmnop", "a/b", "a:b", "a b", "a\tb", "a\x00b", "a\nb"} {
		if err := ValidateName(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ValidateName(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestParseInterface(t *testing.T) {
	p, err := parseInterface(&typespb.Interface{
		HwAddr: "02:00:00:00:00:AA",
		Name:   "eth0",
		Mtu:    1500,
		IPAddresses: []*typespb.IPAddress{
			{Address: "10.0.0.2", Mask: "24"},
			{Address: "10.0.0.2", Mask: "24"}, // duplicate, dropped
			{Address: "10.0.1.2", Mask: "255.255.255.128"},
			{Family: typespb.IPFamily_v6, Address: "fd00::2", Mask: "64"},
			{Address: "192.0.2.1/32"},
			{Address: "::ffff:10.0.3.2", Mask: "8"},
		},
		RawFlags: iffNoARP | 0x1002,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.HwAddr.String() != "02:00:00:00:00:aa" || p.Name != "eth0" || p.MTU != 1500 || !p.NoARP {
		t.Errorf("plan = %+v", p)
	}
	var got []string
	for _, a := range p.Addrs {
		got = append(got, a.String())
	}
	want := "10.0.0.2/24 10.0.1.2/25 fd00::2/64 192.0.2.1/32 10.0.3.2/8"
	if strings.Join(got, " ") != want {
		t.Errorf("addresses = %v, want %s", got, want)
	}
	if p.Addrs[0].IP.To4() == nil || len(p.Addrs[0].IP) != 4 {
		t.Errorf("IPv4 address kept in 16-byte form: %v", []byte(p.Addrs[0].IP))
	}
}

func TestParseInterfaceErrors(t *testing.T) {
	base := func() *typespb.Interface {
		return &typespb.Interface{HwAddr: "02:00:00:00:00:01", Name: "eth0", Mtu: 1500,
			IPAddresses: []*typespb.IPAddress{{Address: "10.0.0.2", Mask: "24"}}}
	}
	cases := []struct {
		name string
		mut  func(*typespb.Interface)
		want string
	}{
		{"empty hw", func(i *typespb.Interface) { i.HwAddr = "" }, "hardware address is empty"},
		{"bad hw", func(i *typespb.Interface) { i.HwAddr = "nope" }, `"nope"`},
		{"mtu 0", func(i *typespb.Interface) { i.Mtu = 0 }, "MTU 0 is out of range [68, 65536]"},
		{"mtu huge", func(i *typespb.Interface) { i.Mtu = 1_000_000 }, "MTU 1000000"},
		{"mtu 67", func(i *typespb.Interface) { i.Mtu = 67 }, "MTU 67"},
		{"mtu v6", func(i *typespb.Interface) {
			i.Mtu = 1279
			i.IPAddresses = append(i.IPAddresses, &typespb.IPAddress{Address: "fd00::1", Mask: "64"})
		}, "has IPv6 addresses"},
		{"empty address", func(i *typespb.Interface) { i.IPAddresses[0].Address = "" }, "address is empty"},
		{"nil address", func(i *typespb.Interface) { i.IPAddresses[0] = nil }, "address is missing"},
		{"bad address", func(i *typespb.Interface) { i.IPAddresses[0].Address = "10.0.0" }, `"10.0.0"`},
		{"zone", func(i *typespb.Interface) { i.IPAddresses[0].Address = "fe80::1%eth0" }, "zone"},
		{"empty mask", func(i *typespb.Interface) { i.IPAddresses[0].Mask = "" }, "mask is empty"},
		{"mask 33", func(i *typespb.Interface) { i.IPAddresses[0].Mask = "33" }, `prefix length "33" is out of range [0, 32]`},
		{"mask -1", func(i *typespb.Interface) { i.IPAddresses[0].Mask = "-1" }, "out of range"},
		{"mask text", func(i *typespb.Interface) { i.IPAddresses[0].Mask = "abc" }, "out of range"},
		{"v6 mask 129", func(i *typespb.Interface) { i.IPAddresses[0] = &typespb.IPAddress{Address: "fd00::1", Mask: "129"} }, "[0, 128]"},
		{"dotted mask on v6", func(i *typespb.Interface) {
			i.IPAddresses[0] = &typespb.IPAddress{Address: "fd00::1", Mask: "255.0.0.0"}
		}, "not a prefix length"},
		{"family v6 with v4", func(i *typespb.Interface) { i.IPAddresses[0].Family = typespb.IPFamily_v6 }, "family says IPv6"},
		{"long name", func(i *typespb.Interface) { i.Name = "0123456789abcdef" }, "16 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			i := base()
			c.mut(i)
			_, err := parseInterface(i)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want InvalidArgument containing %q", err, c.want)
			}
		})
	}
	many := base()
	for range maxAddrs {
		many.IPAddresses = append(many.IPAddresses, &typespb.IPAddress{Address: "10.0.0.3", Mask: "24"})
	}
	if _, err := parseInterface(many); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("%d addresses: %v", len(many.IPAddresses), err)
	}
	if _, err := parseRoutes(make([]*typespb.Route, maxRoutes+1)); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "more than") {
		t.Errorf("too many routes: %v", err)
	}
	if _, err := parseInterface(nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("nil interface: %v", err)
	}
}

func TestParseRoutesOrderAndForms(t *testing.T) {
	plans, err := parseRoutes([]*typespb.Route{
		{Gateway: "10.0.0.1", Device: "eth0"},
		{Dest: "10.0.0.0/24", Device: "eth0", Scope: 253},
		{Dest: "default", Gateway: "fd00::1", Device: "eth0", Family: typespb.IPFamily_v6},
		{Dest: "192.168.1.7/24", Device: "eth1", Source: "192.168.1.1/32"},
		{Dest: "10.9.9.9", Device: "eth1", Flags: 4 | 16},
		{Family: typespb.IPFamily_v6, Device: "eth1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range plans {
		got = append(got, p.String())
	}
	want := []string{
		"10.0.0.0/24 dev eth0",
		"192.168.1.0/24 dev eth1 src 192.168.1.1",
		"10.9.9.9/32 dev eth1",
		"::/0 dev eth1",
		"0.0.0.0/0 via 10.0.0.1 dev eth0",
		"::/0 via fd00::1 dev eth0",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("order/forms:\n got %q\nwant %q", got, want)
	}
	if plans[0].Scope != 253 || plans[0].Pos != 1 {
		t.Errorf("scope/pos lost: %+v", plans[0])
	}
	if !plans[2].OnLink {
		t.Errorf("onlink flag lost")
	}
	if !plans[3].V6 || !plans[5].V6 || plans[4].V6 {
		t.Errorf("families wrong: %+v", plans)
	}
}

func TestParseRouteErrors(t *testing.T) {
	cases := []struct {
		r    *typespb.Route
		want string
	}{
		{nil, "missing"},
		{&typespb.Route{Dest: "10.0.0.0/24"}, "name is empty"},
		{&typespb.Route{Dest: "10.0.0.0/33", Device: "e"}, "not a valid CIDR"},
		{&typespb.Route{Dest: "10.0.0.0/x", Device: "e"}, "not a valid CIDR"},
		{&typespb.Route{Dest: "nonsense", Device: "e"}, "nonsense"},
		{&typespb.Route{Gateway: "10.0.0.256", Device: "e"}, "10.0.0.256"},
		{&typespb.Route{Gateway: "0.0.0.0", Device: "e"}, "unspecified"},
		{&typespb.Route{Source: "x", Device: "e"}, "source"},
		{&typespb.Route{Dest: "10.0.0.0/8", Gateway: "fd00::1", Device: "e"}, "mix"},
		{&typespb.Route{Dest: "10.0.0.0/8", Device: "e", Family: typespb.IPFamily_v6}, "family is IPv6"},
		{&typespb.Route{Dest: "10.0.0.0/8", Device: "e", Family: 7}, "family 7"},
		{&typespb.Route{Dest: "10.0.0.0/8", Device: "e", Scope: 256}, "scope 256"},
		{&typespb.Route{Dest: "10.0.0.0/8", Gateway: "10.0.0.1", Device: "e", Scope: 253}, "cannot have scope 253"},
		{&typespb.Route{Dest: "10.0.0.0/8", Device: "e", Mtu: 67}, "MTU 67"},
		{&typespb.Route{Dest: "10.0.0.0/8", Device: "e", Mtu: 70000}, "MTU 70000"},
		{&typespb.Route{Dest: "fd00::/64", Device: "e", Mtu: 1279}, "MTU 1279"},
	}
	for _, c := range cases {
		_, err := parseRoute(3, c.r)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want InvalidArgument containing %q", c.r, err, c.want)
		}
	}
}

func TestCheckGateways(t *testing.T) {
	mk := func(rs ...*typespb.Route) []routePlan {
		p, err := parseRoutes(rs)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, addrNet, _ := net.ParseCIDR("10.1.0.0/24")
	onLink := map[string][]*net.IPNet{"eth0": {addrNet}}

	ok := [][]routePlan{
		mk(&typespb.Route{Gateway: "10.1.0.1", Device: "eth0"}),
		mk(&typespb.Route{Gateway: "192.168.5.1", Device: "eth0"}, &typespb.Route{Dest: "192.168.5.0/24", Device: "eth0"}),
		mk(&typespb.Route{Gateway: "172.16.0.1", Device: "eth1", Flags: 4}),
		mk(&typespb.Route{Gateway: "fe80::1", Device: "eth1", Family: typespb.IPFamily_v6}),
	}
	for i, rs := range ok {
		if err := checkGateways(rs, onLink); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
	bad := [][]routePlan{
		mk(&typespb.Route{Gateway: "10.2.0.1", Device: "eth0"}),
		// Covered, but on another device.
		mk(&typespb.Route{Gateway: "10.1.0.1", Device: "eth1"}),
		mk(&typespb.Route{Gateway: "192.168.5.1", Device: "eth0"}, &typespb.Route{Dest: "192.168.5.0/24", Device: "eth1"}),
		// A gateway route does not make another gateway reachable.
		mk(&typespb.Route{Dest: "10.5.0.0/16", Gateway: "10.1.0.1", Device: "eth0"}, &typespb.Route{Gateway: "10.5.0.1", Device: "eth0"}),
	}
	for i, rs := range bad {
		err := checkGateways(rs, onLink)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "is not reachable") {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestParseNeighbor(t *testing.T) {
	p, err := parseNeighbor(0, &typespb.ARPNeighbor{ToIPAddress: &typespb.IPAddress{Address: "10.0.0.1"}, Device: "eth0", Lladdr: "02:00:00:00:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	if p.State != nudPermanent || p.MAC.String() != "02:00:00:00:00:01" || !p.IP.Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("plan = %+v", p)
	}
	for _, bad := range []*typespb.ARPNeighbor{
		nil,
		{Device: "eth0"},
		{ToIPAddress: &typespb.IPAddress{Address: "10.0.0.1"}},
		{ToIPAddress: &typespb.IPAddress{Address: "10.0.0.1"}, Device: "eth0", Lladdr: "x"},
		{ToIPAddress: &typespb.IPAddress{Address: "10.0.0.1"}, Device: "eth0", State: 0x100},
		{ToIPAddress: &typespb.IPAddress{Address: "10.0.0.1"}, Device: "eth0", State: -1},
		{ToIPAddress: &typespb.IPAddress{Address: "10.0.0.1"}, Device: "eth0", Flags: 256},
	} {
		if _, err := parseNeighbor(1, bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%v: error %v, want InvalidArgument", bad, err)
		}
	}
}

func TestIPAddressOf(t *testing.T) {
	_, n, _ := net.ParseCIDR("fd00::/64")
	n.IP = net.ParseIP("fd00::2")
	a := ipAddressOf(n)
	if a.Family != typespb.IPFamily_v6 || a.Address != "fd00::2" || a.Mask != "64" {
		t.Errorf("%v", a)
	}
	a = ipAddressOf(&net.IPNet{IP: net.ParseIP("10.0.0.2"), Mask: net.CIDRMask(24, 32)})
	if a.Family != typespb.IPFamily_v4 || a.Address != "10.0.0.2" || a.Mask != "24" {
		t.Errorf("%v", a)
	}
}
