package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

var nsCounter atomic.Int32

// testNS is a network namespace made for one test. All netlink traffic
// goes through a handle bound to it, so the host's namespace is never
// touched.
type testNS struct {
	name string
	h    *netlink.Handle
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating network namespaces needs root")
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("iproute2's ip is needed to create test namespaces: %v", err)
	}
	name := fmt.Sprintf("sgnet-%d-%d", os.Getpid(), nsCounter.Add(1))
	if out, err := exec.Command(ipPath, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ipPath, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	return &testNS{name: name, h: h}
}

func (n *testNS) manager() *Manager {
	return New(Options{Handle: n.h, IPTables: IPTables{Command: n.command}})
}

// command runs a tool inside the test namespace.
func (n *testNS) command(ctx context.Context, path string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, path}, args...)...)
}

// veth creates a pair with fixed hardware addresses; both ends up unless
// down is set.
func (n *testNS) veth(t *testing.T, name, peer, mac, peerMAC string, down bool) netlink.Link {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	phw, _ := net.ParseMAC(peerMAC)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: hw}, PeerName: peer, PeerHardwareAddr: phw}
	if err := n.h.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	for _, nm := range []string{peer, name} {
		l, err := n.h.LinkByName(nm)
		if err != nil {
			t.Fatal(err)
		}
		if !down {
			if err := n.h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, err := n.h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// snapshot is the namespace's configuration as the API reports it, minus
// what the kernel adds by itself for IPv6 (link-local addresses and their
// routes appear asynchronously).
type snapshot struct {
	ifaces []*typespb.Interface
	routes []*typespb.Route
}

func (n *testNS) snapshot(t *testing.T, m *Manager) snapshot {
	t.Helper()
	ctx := context.Background()
	ifs, err := m.ListInterfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		// Carrier state follows the peer asynchronously.
		i.RawFlags &^= unix.IFF_RUNNING | unix.IFF_LOWER_UP
		i.IPAddresses = slices.DeleteFunc(i.IPAddresses, func(a *typespb.IPAddress) bool {
			return strings.HasPrefix(a.Address, "fe80:")
		})
	}
	rs, err := m.ListRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs = slices.DeleteFunc(rs, func(r *typespb.Route) bool {
		return strings.HasPrefix(r.Dest, "fe80:") || strings.HasPrefix(r.Dest, "ff00:")
	})
	return snapshot{ifs, rs}
}

func (s snapshot) equal(o snapshot) bool {
	return slices.EqualFunc(s.ifaces, o.ifaces, func(a, b *typespb.Interface) bool { return proto.Equal(a, b) }) &&
		slices.EqualFunc(s.routes, o.routes, func(a, b *typespb.Route) bool { return proto.Equal(a, b) })
}

func (s snapshot) String() string {
	var b strings.Builder
	for _, i := range s.ifaces {
		fmt.Fprintf(&b, "  if %v\n", i)
	}
	for _, r := range s.routes {
		fmt.Fprintf(&b, "  rt %v\n", r)
	}
	return b.String()
}

func addr(a string, mask string) *typespb.IPAddress {
	ip := net.ParseIP(a)
	f := typespb.IPFamily_v4
	if ip.To4() == nil {
		f = typespb.IPFamily_v6
	}
	return &typespb.IPAddress{Family: f, Address: a, Mask: mask}
}

const (
	macA = "02:00:00:00:0a:01"
	macP = "02:00:00:00:0a:02"
	macB = "02:00:00:00:0b:01"
	macQ = "02:00:00:00:0b:02"
)

// eth0 is the interface most tests configure.
func eth0Request() *typespb.Interface {
	return &typespb.Interface{
		HwAddr:      macA,
		Name:        "eth0",
		Mtu:         1400,
		IPAddresses: []*typespb.IPAddress{addr("10.1.0.2", "24"), addr("fd00::2", "64")},
		RawFlags:    unix.IFF_NOARP,
	}
}

func hasAddr(ifc *typespb.Interface, a, mask string) bool {
	for _, x := range ifc.IPAddresses {
		if x.Address == a && x.Mask == mask {
			return true
		}
	}
	return false
}

func TestUpdateInterfaceConfiguresLink(t *testing.T) {
	n := newTestNS(t)
	m := n.manager()
	ctx := context.Background()
	orig := n.veth(t, "veth-a", "veth-p", macA, macP, true)

	got, err := m.UpdateInterface(ctx, eth0Request())
	if err != nil {
		t.Fatalf("UpdateInterface: %v", err)
	}
	l, err := n.h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("eth0 missing after rename: %v", err)
	}
	a := l.Attrs()
	if a.Index != orig.Attrs().Index {
		t.Errorf("eth0 is link %d, want the link with %s (%d)", a.Index, macA, orig.Attrs().Index)
	}
	if a.MTU != 1400 {
		t.Errorf("MTU = %d, want 1400", a.MTU)
	}
	if a.Flags&net.FlagUp == 0 {
		t.Errorf("eth0 is not up")
	}
	if a.RawFlags&unix.IFF_NOARP == 0 {
		t.Errorf("NOARP not set: raw flags %#x", a.RawFlags)
	}
	addrs, err := n.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, x := range addrs {
		have = append(have, x.IPNet.String())
	}
	for _, w := range []string{"10.1.0.2/24", "fd00::2/64"} {
		if !slices.Contains(have, w) {
			t.Errorf("address %s missing; have %v", w, have)
		}
	}
	// The reply describes the result.
	if got.Name != "eth0" || got.Mtu != 1400 || got.HwAddr != macA || !hasAddr(got, "10.1.0.2", "24") || !hasAddr(got, "fd00::2", "64") || got.RawFlags&unix.IFF_NOARP == 0 {
		t.Errorf("reply = %v", got)
	}

	// ListInterfaces round-trips what was set.
	list, err := m.ListInterfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found *typespb.Interface
	for _, i := range list {
		if i.HwAddr == macA {
			found = i
		}
	}
	if found == nil {
		t.Fatalf("ListInterfaces has no %s: %v", macA, list)
	}
	if found.Name != "eth0" || found.Mtu != 1400 || found.Type != "veth" || !hasAddr(found, "10.1.0.2", "24") || !hasAddr(found, "fd00::2", "64") || found.IPAddresses[0].Family != typespb.IPFamily_v4 {
		t.Errorf("listed %v", found)
	}

	// A second update replaces the addresses and clears NOARP.
	req := eth0Request()
	req.IPAddresses = []*typespb.IPAddress{addr("10.3.0.2", "255.255.0.0")}
	req.RawFlags = 0
	got, err = m.UpdateInterface(ctx, req)
	if err != nil {
		t.Fatalf("second UpdateInterface: %v", err)
	}
	if hasAddr(got, "10.1.0.2", "24") || hasAddr(got, "fd00::2", "64") || !hasAddr(got, "10.3.0.2", "16") {
		t.Errorf("addresses not replaced: %v", got.IPAddresses)
	}
	if got.RawFlags&unix.IFF_NOARP != 0 {
		t.Errorf("NOARP still set")
	}
}

func TestUpdateInterfaceSwapsTakenName(t *testing.T) {
	n := newTestNS(t)
	m := n.manager()
	n.veth(t, "eth0", "peer0", macB, macQ, false)
	target := n.veth(t, "veth-a", "veth-p", macA, macP, false)

	if _, err := m.UpdateInterface(context.Background(), eth0Request()); err != nil {
		t.Fatalf("UpdateInterface: %v", err)
	}
	l, err := n.h.LinkByName("eth0")
	if err != nil || l.Attrs().Index != target.Attrs().Index {
		t.Fatalf("eth0 is not the link with %s: %v %v", macA, l, err)
	}
	other, err := n.h.LinkByName("veth-a")
	if err != nil || other.Attrs().HardwareAddr.String() != macB {
		t.Fatalf("the previous eth0 did not take the old name veth-a: %v %v", other, err)
	}
	if other.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("the previous eth0 was left down")
	}
}

func TestUpdateInterfaceDummyLink(t *testing.T) {
	n := newTestNS(t)
	hw, _ := net.ParseMAC(macB)
	err := n.h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "dummy0", HardwareAddr: hw}})
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) && !dummySupported() {
		t.Skipf("this kernel has no dummy link driver: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	m := n.manager()
	got, err := m.UpdateInterface(context.Background(), &typespb.Interface{
		HwAddr: macB, Name: "svc0", Mtu: 9000, IPAddresses: []*typespb.IPAddress{addr("192.0.2.10", "32")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "svc0" || got.Mtu != 9000 || got.Type != "dummy" || !hasAddr(got, "192.0.2.10", "32") {
		t.Errorf("reply = %v", got)
	}
}

// dummySupported tells whether the running kernel has the dummy driver
// built in or loadable.
func dummySupported() bool {
	if _, err := os.Stat("/sys/module/dummy"); err == nil {
		return true
	}
	out, _ := os.ReadFile("/proc/modules")
	return strings.Contains(string(out), "dummy ")
}

// configured sets up eth0 and a table through the API and returns the
// manager.
func configured(t *testing.T, n *testNS) *Manager {
	t.Helper()
	m := n.manager()
	n.veth(t, "veth-a", "veth-p", macA, macP, false)
	if _, err := m.UpdateInterface(context.Background(), eth0Request()); err != nil {
		t.Fatalf("UpdateInterface: %v", err)
	}
	if _, err := m.UpdateRoutes(context.Background(), []*typespb.Route{
		{Dest: "0.0.0.0/0", Gateway: "10.1.0.1", Device: "eth0"},
		{Dest: "10.77.0.0/16", Device: "eth0", Scope: 253},
	}); err != nil {
		t.Fatalf("UpdateRoutes: %v", err)
	}
	return m
}

func TestBadInterfaceLeavesConfiguration(t *testing.T) {
	n := newTestNS(t)
	m := configured(t, n)
	before := n.snapshot(t, m)

	long := "abcdefghijklmnop" // 16 bytes
	cases := []struct {
		name   string
		mutate func(*typespb.Interface)
		class  error
		want   string
	}{
		{"unknown hardware address", func(i *typespb.Interface) { i.HwAddr = "02:00:00:00:ee:ee" }, errdefs.ErrNotFound, "Link not found (Address: 02:00:00:00:ee:ee)"},
		{"malformed hardware address", func(i *typespb.Interface) { i.HwAddr = "02:00:zz" }, errdefs.ErrInvalidArgument, "02:00:zz"},
		{"prefix too long", func(i *typespb.Interface) { i.IPAddresses[0].Mask = "33" }, errdefs.ErrInvalidArgument, `prefix length "33"`},
		{"invalid address", func(i *typespb.Interface) { i.IPAddresses[0].Address = "10.1.0.300" }, errdefs.ErrInvalidArgument, "10.1.0.300"},
		{"non-contiguous netmask", func(i *typespb.Interface) { i.IPAddresses[0].Mask = "255.0.255.0" }, errdefs.ErrInvalidArgument, "not contiguous"},
		{"MTU 0", func(i *typespb.Interface) { i.Mtu = 0 }, errdefs.ErrInvalidArgument, "MTU 0"},
		{"MTU 1000000", func(i *typespb.Interface) { i.Mtu = 1_000_000 }, errdefs.ErrInvalidArgument, "MTU 1000000"},
		{"MTU too small for IPv6", func(i *typespb.Interface) { i.Mtu = 1000 }, errdefs.ErrInvalidArgument, "IPv6"},
		{"empty name", func(i *typespb.Interface) { i.Name = "" }, errdefs.ErrInvalidArgument, "name is empty"},
		{"name too long", func(i *typespb.Interface) { i.Name = long }, errdefs.ErrInvalidArgument, long},
		{"name with slash", func(i *typespb.Interface) { i.Name = "a/b" }, errdefs.ErrInvalidArgument, "a/b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := eth0Request()
			req.Name = "renamed0"
			req.IPAddresses = append(req.IPAddresses, addr("10.5.0.2", "24"))
			c.mutate(req)
			_, err := m.UpdateInterface(context.Background(), req)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, c.class) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q: want class %v and text %q", err, c.class, c.want)
			}
			if after := n.snapshot(t, m); !after.equal(before) {
				t.Errorf("configuration changed:\nbefore:\n%safter:\n%s", before, after)
			}
		})
	}
}

// A request that passes validation but that the kernel refuses midway
// (veth's largest MTU is 65535, after the rename has been done) is undone,
// including the routes that taking the link down flushed.
func TestKernelRefusalRollsInterfaceBack(t *testing.T) {
	n := newTestNS(t)
	m := configured(t, n)
	before := n.snapshot(t, m)

	req := eth0Request()
	req.Name = "renamed0"
	req.Mtu = MaxMTU
	req.IPAddresses = []*typespb.IPAddress{addr("10.9.0.2", "24")}
	_, err := m.UpdateInterface(context.Background(), req)
	if err == nil {
		t.Fatal("MTU 65536 on a veth was accepted")
	}
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "previous configuration restored") {
		t.Errorf("error = %v", err)
	}
	if after := n.snapshot(t, m); !after.equal(before) {
		t.Errorf("configuration not restored:\nbefore:\n%safter:\n%s", before, after)
	}
}

func routeKey(r *typespb.Route) string {
	return fmt.Sprintf("%s via %q dev %s src %q scope %d v6=%v flags %d", r.Dest, r.Gateway, r.Device, r.Source, r.Scope, r.Family == typespb.IPFamily_v6, r.Flags)
}

func TestUpdateRoutesInstallsInOrderAndRoundTrips(t *testing.T) {
	n := newTestNS(t)
	m := configured(t, n)
	ctx := context.Background()

	// Gateway routes come first in the request; 172.16.0.0/12's gateway is
	// reachable only through 192.168.50.0/24, a device route later in the
	// same request, so the kernel accepts it only if device routes are
	// installed first.
	req := []*typespb.Route{
		{Dest: "", Gateway: "10.1.0.1", Device: "eth0"},
		{Dest: "172.16.0.0/12", Gateway: "192.168.50.1", Device: "eth0"},
		{Dest: "10.2.0.0/16", Gateway: "10.1.0.254", Device: "eth0", Source: "10.1.0.2"},
		{Dest: "10.50.0.0/16", Gateway: "10.99.0.1", Device: "eth0", Flags: 4},
		{Dest: "::/0", Gateway: "fd00::1", Device: "eth0", Family: typespb.IPFamily_v6},
		{Dest: "2001:db8::/32", Gateway: "fe80::1", Device: "eth0", Family: typespb.IPFamily_v6},
		{Dest: "192.168.50.0/24", Device: "eth0", Scope: 253},
		{Dest: "10.9.0.0/16", Device: "eth0", Scope: 253, Source: "10.1.0.2"},
		{Dest: "fd01::/64", Device: "eth0", Family: typespb.IPFamily_v6},
	}
	got, err := m.UpdateRoutes(ctx, req)
	if err != nil {
		t.Fatalf("UpdateRoutes: %v", err)
	}
	list, err := m.ListRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, list, func(a, b *typespb.Route) bool { return proto.Equal(a, b) }) {
		t.Errorf("UpdateRoutes reply differs from ListRoutes:\n%v\n%v", got, list)
	}
	var keys []string
	for _, r := range list {
		keys = append(keys, routeKey(r))
	}
	want := []string{
		`0.0.0.0/0 via "10.1.0.1" dev eth0 src "" scope 0 v6=false flags 0`,
		`172.16.0.0/12 via "192.168.50.1" dev eth0 src "" scope 0 v6=false flags 0`,
		`10.2.0.0/16 via "10.1.0.254" dev eth0 src "10.1.0.2" scope 0 v6=false flags 0`,
		`10.50.0.0/16 via "10.99.0.1" dev eth0 src "" scope 0 v6=false flags 4`,
		`::/0 via "fd00::1" dev eth0 src "" scope 0 v6=true flags 0`,
		`2001:db8::/32 via "fe80::1" dev eth0 src "" scope 0 v6=true flags 0`,
		`192.168.50.0/24 via "" dev eth0 src "" scope 253 v6=false flags 0`,
		`10.9.0.0/16 via "" dev eth0 src "10.1.0.2" scope 253 v6=false flags 0`,
		`fd01::/64 via "" dev eth0 src "" scope 0 v6=true flags 0`,
		// The kernel's own prefix route stays.
		`10.1.0.0/24 via "" dev eth0 src "10.1.0.2" scope 253 v6=false flags 0`,
	}
	for _, w := range want {
		if !slices.Contains(keys, w) {
			t.Errorf("route missing: %s\nhave:\n  %s", w, strings.Join(keys, "\n  "))
		}
	}
	// The previous table's route not in the request is gone.
	for _, k := range keys {
		if strings.HasPrefix(k, "10.77.0.0/16") {
			t.Errorf("old route survived: %s", k)
		}
	}
	// Feeding the listing back yields the same table.
	again, err := m.UpdateRoutes(ctx, list)
	if err != nil {
		t.Fatalf("UpdateRoutes(ListRoutes()): %v", err)
	}
	if !slices.EqualFunc(again, list, func(a, b *typespb.Route) bool { return routeKey(a) == routeKey(b) }) {
		t.Errorf("round trip changed the table:\n%v\n%v", list, again)
	}
}

func TestBadRoutesLeaveTable(t *testing.T) {
	n := newTestNS(t)
	m := configured(t, n)
	before := n.snapshot(t, m)
	good := &typespb.Route{Dest: "10.66.0.0/16", Device: "eth0"}
	cases := []struct {
		name  string
		r     *typespb.Route
		class error
		want  string
	}{
		{"invalid CIDR", &typespb.Route{Dest: "10.0.0.0/33", Device: "eth0"}, errdefs.ErrInvalidArgument, "10.0.0.0/33"},
		{"invalid gateway", &typespb.Route{Gateway: "10.1.0.300", Device: "eth0"}, errdefs.ErrInvalidArgument, "10.1.0.300"},
		{"unreachable gateway", &typespb.Route{Dest: "10.8.0.0/16", Gateway: "10.200.0.1", Device: "eth0"}, errdefs.ErrInvalidArgument, "gateway 10.200.0.1 is not reachable"},
		{"unknown device", &typespb.Route{Dest: "10.8.0.0/16", Device: "nosuch0"}, errdefs.ErrNotFound, `"nosuch0"`},
		{"empty device", &typespb.Route{Dest: "10.8.0.0/16"}, errdefs.ErrInvalidArgument, "name is empty"},
		{"foreign source", &typespb.Route{Dest: "10.8.0.0/16", Device: "eth0", Source: "10.200.0.9"}, errdefs.ErrInvalidArgument, "10.200.0.9 is not an address"},
		{"mixed families", &typespb.Route{Dest: "10.8.0.0/16", Gateway: "fd00::1", Device: "eth0"}, errdefs.ErrInvalidArgument, "mix IPv4 and IPv6"},
		{"scope out of range", &typespb.Route{Dest: "10.8.0.0/16", Device: "eth0", Scope: 300}, errdefs.ErrInvalidArgument, "scope 300"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := m.UpdateRoutes(context.Background(), []*typespb.Route{good, c.r})
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, c.class) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q: want class %v and text %q", err, c.class, c.want)
			}
			if after := n.snapshot(t, m); !after.equal(before) {
				t.Errorf("table changed:\nbefore:\n%safter:\n%s", before, after)
			}
		})
	}
}

// A route the kernel refuses after others were added (a device route on a
// link that is down) makes UpdateRoutes put the previous table back.
func TestRoutesRollBackWhenKernelRefuses(t *testing.T) {
	n := newTestNS(t)
	m := configured(t, n)
	n.veth(t, "down0", "down0p", macB, macQ, true)
	before := n.snapshot(t, m)

	_, err := m.UpdateRoutes(context.Background(), []*typespb.Route{
		{Dest: "10.66.0.0/16", Device: "eth0"},
		{Dest: "0.0.0.0/0", Gateway: "10.1.0.9", Device: "eth0"},
		{Dest: "10.88.0.0/16", Device: "down0"},
	})
	if err == nil {
		t.Fatal("a route on a down link was accepted")
	}
	if !strings.Contains(err.Error(), "previous table restored") || !strings.Contains(err.Error(), "10.88.0.0/16") {
		t.Errorf("error = %v", err)
	}
	if after := n.snapshot(t, m); !after.equal(before) {
		t.Errorf("table not restored:\nbefore:\n%safter:\n%s", before, after)
	}
}

func TestAddARPNeighbors(t *testing.T) {
	n := newTestNS(t)
	m := configured(t, n)
	ctx := context.Background()
	err := m.AddARPNeighbors(ctx, []*typespb.ARPNeighbor{
		{ToIPAddress: addr("10.1.0.1", ""), Device: "eth0", Lladdr: "02:00:00:00:0c:01"},
		{ToIPAddress: addr("fd00::1", ""), Device: "eth0", Lladdr: "02:00:00:00:0c:02", State: unix.NUD_PERMANENT},
	})
	if err != nil {
		t.Fatalf("AddARPNeighbors: %v", err)
	}
	l, _ := n.h.LinkByName("eth0")
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := n.h.NeighList(l.Attrs().Index, fam)
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		for _, e := range ns {
			if (e.IP.Equal(net.ParseIP("10.1.0.1")) && e.HardwareAddr.String() == "02:00:00:00:0c:01") ||
				(e.IP.Equal(net.ParseIP("fd00::1")) && e.HardwareAddr.String() == "02:00:00:00:0c:02") {
				ok = e.State == unix.NUD_PERMANENT
			}
		}
		if !ok {
			t.Errorf("family %d: permanent neighbour missing: %v", fam, ns)
		}
	}

	before, _ := n.h.NeighList(0, netlink.FAMILY_ALL)
	for _, c := range []struct {
		nb    *typespb.ARPNeighbor
		class error
	}{
		{&typespb.ARPNeighbor{ToIPAddress: addr("10.1.0.5", ""), Device: "nosuch0", Lladdr: "02:00:00:00:0c:05"}, errdefs.ErrNotFound},
		{&typespb.ARPNeighbor{ToIPAddress: &typespb.IPAddress{Address: "10.1.0.500"}, Device: "eth0"}, errdefs.ErrInvalidArgument},
		{&typespb.ARPNeighbor{ToIPAddress: addr("10.1.0.5", ""), Device: "eth0", Lladdr: "zz"}, errdefs.ErrInvalidArgument},
	} {
		err := m.AddARPNeighbors(ctx, []*typespb.ARPNeighbor{{ToIPAddress: addr("10.1.0.7", ""), Device: "eth0", Lladdr: "02:00:00:00:0c:07"}, c.nb})
		if !errors.Is(err, c.class) {
			t.Errorf("%v: error %v, want %v", c.nb, err, c.class)
		}
	}
	after, _ := n.h.NeighList(0, netlink.FAMILY_ALL)
	if len(after) != len(before) {
		t.Errorf("neighbour table changed by refused requests: %v -> %v", before, after)
	}
}

// The real tools, run inside the test namespace.
func TestIPTablesInNamespace(t *testing.T) {
	n := newTestNS(t)
	for _, tool := range []string{"iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (Debian package iptables): %v", tool, err)
		}
	}
	m := n.manager()
	ctx := context.Background()
	for _, v6 := range []bool{false, true} {
		src := "10.9.9.9/32"
		if v6 {
			src = "fd00:9::9/128"
		}
		rules := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s " + src + " -j DROP\nCOMMIT\n"
		if _, err := m.SetIPTables(ctx, v6, []byte(rules)); err != nil {
			t.Fatalf("SetIPTables(v6=%v): %v", v6, err)
		}
		out, err := m.GetIPTables(ctx, v6)
		if err != nil {
			t.Fatalf("GetIPTables(v6=%v): %v", v6, err)
		}
		if !strings.Contains(string(out), "-A INPUT -s "+src+" -j DROP") {
			t.Errorf("v6=%v: rule missing from:\n%s", v6, out)
		}
		_, err = m.SetIPTables(ctx, v6, []byte("*filter\n-A NOSUCHCHAIN -j DROP\nCOMMIT\n"))
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("v6=%v: bad rules: %v", v6, err)
		}
	}
	// The host's own table never saw the rule.
	host, err := exec.Command("iptables-save").Output()
	if err == nil && strings.Contains(string(host), "10.9.9.9") {
		t.Errorf("rule leaked into the host namespace")
	}
}

// When the kernel refuses a neighbour (IPv6 on a link whose MTU is too
// small for IPv6), the entries the request already wrote are undone.
func TestNeighboursRollBackWhenKernelRefuses(t *testing.T) {
	n := newTestNS(t)
	m := configured(t, n)
	small := n.veth(t, "small0", "small0p", macB, macQ, false)
	if err := n.h.LinkSetMTU(small, 1200); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// An existing entry that the request replaces must come back as it was.
	if err := m.AddARPNeighbors(ctx, []*typespb.ARPNeighbor{{ToIPAddress: addr("10.1.0.8", ""), Device: "eth0", Lladdr: "02:00:00:00:0c:08"}}); err != nil {
		t.Fatal(err)
	}
	list := func() []string {
		ns, err := n.h.NeighList(0, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ns {
			if e.State&unix.NUD_PERMANENT != 0 {
				out = append(out, fmt.Sprintf("%s %s %d", e.IP, e.HardwareAddr, e.LinkIndex))
			}
		}
		slices.Sort(out)
		return out
	}
	before := list()
	err := m.AddARPNeighbors(ctx, []*typespb.ARPNeighbor{
		{ToIPAddress: addr("10.1.0.7", ""), Device: "eth0", Lladdr: "02:00:00:00:0c:07"},
		{ToIPAddress: addr("10.1.0.8", ""), Device: "eth0", Lladdr: "02:00:00:00:0c:88"},
		{ToIPAddress: addr("fd00::7", ""), Device: "small0", Lladdr: "02:00:00:00:0c:17"},
	})
	if err == nil {
		t.Fatal("IPv6 neighbour on an IPv6-less link was accepted")
	}
	if !strings.Contains(err.Error(), "fd00::7") || !strings.Contains(err.Error(), "undone") {
		t.Errorf("error = %v", err)
	}
	if after := list(); !slices.Equal(after, before) {
		t.Errorf("neighbours not restored:\nbefore %v\nafter  %v", before, after)
	}
}

// Removing a primary IPv4 address takes its secondaries along; a wanted
// secondary must still be there afterwards.
func TestUpdateInterfaceKeepsWantedSecondary(t *testing.T) {
	n := newTestNS(t)
	m := n.manager()
	n.veth(t, "veth-a", "veth-p", macA, macP, false)
	req := eth0Request()
	req.IPAddresses = []*typespb.IPAddress{addr("10.1.0.2", "24"), addr("10.1.0.3", "24")}
	if _, err := m.UpdateInterface(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	req.IPAddresses = []*typespb.IPAddress{addr("10.1.0.3", "24")}
	got, err := m.UpdateInterface(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !hasAddr(got, "10.1.0.3", "24") || hasAddr(got, "10.1.0.2", "24") {
		t.Errorf("addresses = %v, want only 10.1.0.3/24", got.IPAddresses)
	}
}

// Route.mtu (types.proto field 8) becomes the route's RTAX_MTU metric, as
// upstream sets it, and ListRoutes reports it back; 0 leaves none.
func TestUpdateRoutesSetsMTU(t *testing.T) {
	n := newTestNS(t)
	m := configured(t, n)
	ctx := context.Background()
	req := []*typespb.Route{
		{Dest: "0.0.0.0/0", Gateway: "10.1.0.1", Device: "eth0", Mtu: 1300},
		{Dest: "fd02::/64", Gateway: "fd00::1", Device: "eth0", Family: typespb.IPFamily_v6, Mtu: 1280},
		{Dest: "10.3.0.0/16", Gateway: "10.1.0.1", Device: "eth0"},
	}
	got, err := m.UpdateRoutes(ctx, req)
	if err != nil {
		t.Fatalf("UpdateRoutes: %v", err)
	}
	mtus := map[string]uint32{}
	for _, r := range got {
		mtus[r.Dest] = r.Mtu
	}
	for dest, want := range map[string]uint32{"0.0.0.0/0": 1300, "fd02::/64": 1280, "10.3.0.0/16": 0} {
		if have, ok := mtus[dest]; !ok || have != want {
			t.Errorf("route %s: mtu %d (listed %v), want %d", dest, have, ok, want)
		}
	}
	// The kernel holds it, not just our reply.
	rs, err := n.h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rs {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			found = true
			if r.MTU != 1300 {
				t.Errorf("kernel default route MTU %d, want 1300", r.MTU)
			}
		}
	}
	if !found {
		t.Error("default route not in the kernel table")
	}
	// Feeding the listing back keeps the MTUs.
	again, err := m.UpdateRoutes(ctx, got)
	if err != nil {
		t.Fatalf("UpdateRoutes(listing): %v", err)
	}
	// The kernel's carrier-state flags (RTNH_F_DEAD 1, RTNH_F_LINKDOWN 16)
	// follow the veth's carrier, which may settle between the two
	// listings; they are the kernel's, not part of what was set.
	sameRoute := func(a, b *typespb.Route) bool {
		a, b = proto.Clone(a).(*typespb.Route), proto.Clone(b).(*typespb.Route)
		a.Flags &^= 0x11
		b.Flags &^= 0x11
		return proto.Equal(a, b)
	}
	if !slices.EqualFunc(again, got, sameRoute) {
		t.Errorf("round trip changed the table:\n%v\n%v", got, again)
	}
}

// hotplugNIC plays a NIC hot-plugged while UpdateInterface runs: the link
// appears only when the manager waits for the device path.
type hotplugNIC struct {
	t      *testing.T
	n      *testNS
	paths  []string
	failed error
}

func (h *hotplugNIC) NetPCI(_ context.Context, p string) (string, error) {
	h.paths = append(h.paths, p)
	if h.failed != nil {
		return "", h.failed
	}
	h.n.veth(h.t, "eth7", "eth7-peer", macA, macP, false)
	return "eth7", nil
}

// With a device path, UpdateInterface waits for the NIC at that path
// before looking the link up by MAC, so a NIC still arriving is
// configured rather than "not found"; without one it does not wait.
func TestUpdateInterfaceWaitsForDevicePath(t *testing.T) {
	n := newTestNS(t)
	nics := &hotplugNIC{t: t, n: n}
	m := New(Options{Handle: n.h, NICs: nics})
	req := eth0Request()
	req.DevicePath = "02/01"
	got, err := m.UpdateInterface(context.Background(), req)
	if err != nil {
		t.Fatalf("UpdateInterface with a device path: %v", err)
	}
	if got.Name != "eth0" || got.HwAddr != macA || !slices.Equal(nics.paths, []string{"02/01"}) {
		t.Errorf("got %v, waited for %v", got, nics.paths)
	}

	// No device path: no wait.
	req.DevicePath = ""
	if _, err := m.UpdateInterface(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if len(nics.paths) != 1 {
		t.Errorf("waited without a device path: %v", nics.paths)
	}

	// The NIC never comes: the wait's error, naming the device path, and
	// nothing touched.
	before := n.snapshot(t, m)
	nics.failed = fmt.Errorf("timed out after 3s waiting for network device at PCI path 02/03: %w", context.DeadlineExceeded)
	req.DevicePath = "02/03"
	req.Mtu = 1300
	_, err = m.UpdateInterface(context.Background(), req)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `device at "02/03" not available`) {
		t.Errorf("NIC never arrives: %v", err)
	}
	if after := n.snapshot(t, m); !after.equal(before) {
		t.Errorf("configuration changed:\nbefore\n%v\nafter\n%v", before, after)
	}
}
