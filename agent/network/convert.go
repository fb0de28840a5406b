package network

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// Limits checked before a request reaches the kernel, so that a value the
// kernel would reject halfway through a change is refused up front.
const (
	// MaxNameLen is the longest interface name the kernel accepts (IFNAMSIZ-1).
	MaxNameLen = 15
	// MinMTU is the smallest MTU IPv4 allows (RFC 791).
	MinMTU = 68
	// MinMTUv6 is the smallest MTU IPv6 allows (RFC 8200); an interface
	// carrying IPv6 addresses must not go below it.
	MinMTUv6 = 1280
	// MaxMTU is the largest MTU any Linux device has (loopback's 64 KiB).
	MaxMTU = 65536

	// iffNoARP is IFF_NOARP from <linux/if.h>, the only raw flag the
	// runtime sends (it masks the host link's flags with it).
	iffNoARP = 0x80
	// rtnhFOnlink is RTNH_F_ONLINK: the gateway is on-link even though no
	// route covers it.
	rtnhFOnlink = 0x4
	// nudPermanent is NUD_PERMANENT, the state used for a neighbour whose
	// state is left zero (as upstream does).
	nudPermanent = 0x80
	// rtScopeLink is RT_SCOPE_LINK; a gateway route cannot have it or any
	// narrower scope.
	rtScopeLink = 253

	// Request sizes far beyond any pod's needs; they bound the work a
	// hostile request can cause (gateway checks are quadratic).
	maxAddrs  = 256
	maxRoutes = 4096
	maxNeighs = 4096
)

// ValidateName checks an interface name the way the kernel's
// dev_valid_name does: 1 to 15 bytes, not "." or "..", no '/', ':', white
// space or control characters.
func ValidateName(name string) error {
	switch {
	case name == "":
		return hostinput.Invalid("interface name is empty")
	case len(name) > MaxNameLen:
		return hostinput.Invalid("interface name %q is %d bytes, longer than %d", name, len(name), MaxNameLen)
	case name == "." || name == "..":
		return hostinput.Invalid("interface name %q is not allowed", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r) || r == unicode.ReplacementChar {
			return hostinput.Invalid("interface name %q contains %q", name, r)
		}
	}
	return nil
}

// ifacePlan is a validated UpdateInterface request.
type ifacePlan struct {
	HwAddr net.HardwareAddr
	Name   string
	MTU    int
	// Addrs are the requested addresses: IP is the host address (not the
	// network), Mask its prefix.
	Addrs []*net.IPNet
	NoARP bool
}

// parseInterface validates an UpdateInterface request completely.
func parseInterface(iface *typespb.Interface) (ifacePlan, error) {
	var p ifacePlan
	if iface == nil {
		return p, hostinput.Invalid("interface is missing from the request")
	}
	hw := strings.TrimSpace(iface.GetHwAddr())
	if hw == "" {
		return p, hostinput.Invalid("interface %q: hardware address is empty", iface.GetName())
	}
	mac, err := net.ParseMAC(hw)
	if err != nil {
		return p, hostinput.Invalid("interface %q: hardware address %q: %v", iface.GetName(), hw, err)
	}
	p.HwAddr = mac
	if err := ValidateName(iface.GetName()); err != nil {
		return p, fmt.Errorf("interface with hardware address %s: %w", hw, err)
	}
	p.Name = iface.GetName()

	if n := len(iface.GetIPAddresses()); n > maxAddrs {
		return p, hostinput.Invalid("interface %q: %d addresses, more than %d", p.Name, n, maxAddrs)
	}
	hasV6 := false
	seen := map[string]bool{}
	for i, a := range iface.GetIPAddresses() {
		n, err := parseIPAddress(a)
		if err != nil {
			return p, fmt.Errorf("interface %q: address %d: %w", p.Name, i, err)
		}
		if n.IP.To4() == nil {
			hasV6 = true
		}
		key := n.String()
		if seen[key] {
			continue
		}
		seen[key] = true
		p.Addrs = append(p.Addrs, n)
	}

	mtu := iface.GetMtu()
	lo := uint64(MinMTU)
	if hasV6 {
		lo = MinMTUv6
	}
	if mtu < lo || mtu > MaxMTU {
		why := ""
		if hasV6 && mtu >= MinMTU && mtu < MinMTUv6 {
			why = " (the interface has IPv6 addresses)"
		}
		return p, hostinput.Invalid("interface %q: MTU %d is out of range [%d, %d]%s", p.Name, mtu, lo, MaxMTU, why)
	}
	p.MTU = int(mtu)
	p.NoARP = iface.GetRawFlags()&iffNoARP != 0
	return p, nil
}

// parseIPAddress turns a protocol address (address plus mask as a prefix
// length, or a dotted IPv4 mask) into a host address with its prefix.
// An address written in CIDR form with an empty mask is accepted too.
func parseIPAddress(a *typespb.IPAddress) (*net.IPNet, error) {
	if a == nil {
		return nil, hostinput.Invalid("address is missing")
	}
	addrStr, mask := strings.TrimSpace(a.GetAddress()), strings.TrimSpace(a.GetMask())
	if addrStr == "" {
		return nil, hostinput.Invalid("address is empty")
	}
	if i := strings.IndexByte(addrStr, '/'); i >= 0 && mask == "" {
		addrStr, mask = addrStr[:i], addrStr[i+1:]
	}
	ip, err := parseIP(addrStr)
	if err != nil {
		return nil, err
	}
	if a.GetFamily() == typespb.IPFamily_v6 && ip.To4() != nil {
		return nil, hostinput.Invalid("address %s is IPv4 but its family says IPv6", addrStr)
	}
	bits := 8 * len(ip)
	if mask == "" {
		return nil, hostinput.Invalid("address %s: mask is empty", addrStr)
	}
	ones, err := parseMask(mask, bits)
	if err != nil {
		return nil, hostinput.Invalid("address %s: %v", addrStr, err)
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(ones, bits)}, nil
}

// parseIP parses a plain IP address (no zone) and returns it in its
// shortest form: 4 bytes for IPv4, 16 for IPv6.
func parseIP(s string) (net.IP, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, hostinput.Invalid("IP address %q is not valid", s)
	}
	if a.Zone() != "" {
		return nil, hostinput.Invalid("IP address %q has a zone, which is not supported here", s)
	}
	return net.IP(a.Unmap().AsSlice()), nil
}

// parseMask reads a prefix length ("24") or a dotted IPv4 netmask
// ("255.255.255.0") for an address of the given bit length.
func parseMask(mask string, bits int) (int, error) {
	if strings.Contains(mask, ".") {
		ip := net.ParseIP(mask).To4()
		if ip == nil || bits != 32 {
			return 0, fmt.Errorf("mask %q is not a prefix length or an IPv4 netmask", mask)
		}
		ones, total := net.IPMask(ip).Size()
		if total == 0 {
			return 0, fmt.Errorf("netmask %q is not contiguous", mask)
		}
		return ones, nil
	}
	n, err := strconv.Atoi(mask)
	if err != nil || n < 0 || n > bits {
		return 0, fmt.Errorf("prefix length %q is out of range [0, %d]", mask, bits)
	}
	return n, nil
}

// routePlan is one validated route.
type routePlan struct {
	// Pos is the route's position in the request, for error messages.
	Pos    int
	Device string
	// Dst is never nil: the default route is 0.0.0.0/0 or ::/0.
	Dst    *net.IPNet
	Gw     net.IP
	Src    net.IP
	Scope  uint8
	OnLink bool
	V6     bool
	// MTU is the route's MTU metric; 0 sets none (the device's applies).
	MTU int
}

func (r routePlan) String() string {
	s := r.Dst.String()
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	s += " dev " + r.Device
	if r.Src != nil {
		s += " src " + r.Src.String()
	}
	return s
}

// parseRoute validates one protocol route.
func parseRoute(pos int, r *typespb.Route) (routePlan, error) {
	p := routePlan{Pos: pos}
	if r == nil {
		return p, hostinput.Invalid("route %d is missing", pos)
	}
	fail := func(format string, args ...any) error {
		return hostinput.Invalid("route %d (dest %q gateway %q device %q): %s", pos, r.GetDest(), r.GetGateway(), r.GetDevice(), fmt.Sprintf(format, args...))
	}
	if err := ValidateName(r.GetDevice()); err != nil {
		return p, fmt.Errorf("route %d: device: %w", pos, err)
	}
	p.Device = r.GetDevice()

	var fams []bool // true for IPv6, one entry per address given
	if d := strings.TrimSpace(r.GetDest()); d != "" && d != "default" {
		dst, err := parseDest(d)
		if err != nil {
			return p, fail("destination: %v", err)
		}
		p.Dst = dst
		fams = append(fams, dst.IP.To4() == nil)
	}
	if g := strings.TrimSpace(r.GetGateway()); g != "" {
		gw, err := parseIP(g)
		if err != nil {
			return p, fail("gateway: %v", err)
		}
		if gw.IsUnspecified() {
			return p, fail("gateway %s is the unspecified address", g)
		}
		p.Gw = gw
		fams = append(fams, gw.To4() == nil)
	}
	if s := strings.TrimSpace(r.GetSource()); s != "" {
		// The runtime sends the preferred source as a plain address; a
		// prefix, if present, is not meaningful for it.
		if i := strings.IndexByte(s, '/'); i >= 0 {
			s = s[:i]
		}
		src, err := parseIP(s)
		if err != nil {
			return p, fail("source: %v", err)
		}
		p.Src = src
		fams = append(fams, src.To4() == nil)
	}

	switch r.GetFamily() {
	case typespb.IPFamily_v4, typespb.IPFamily_v6:
	default:
		return p, fail("family %d is neither IPv4 nor IPv6", r.GetFamily())
	}
	p.V6 = r.GetFamily() == typespb.IPFamily_v6
	if len(fams) > 0 {
		// The addresses decide; IPFamily v4 is the zero value, so only an
		// explicit v6 with IPv4 addresses is a contradiction.
		v6 := fams[0]
		for _, f := range fams[1:] {
			if f != v6 {
				return p, fail("destination, gateway and source mix IPv4 and IPv6")
			}
		}
		if p.V6 && !v6 {
			return p, fail("family is IPv6 but the addresses are IPv4")
		}
		p.V6 = v6
	}
	if p.Dst == nil {
		bits := 32
		if p.V6 {
			bits = 128
		}
		p.Dst = &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)}
	}

	if r.GetScope() > 255 {
		return p, fail("scope %d is out of range [0, 255]", r.GetScope())
	}
	p.Scope = uint8(r.GetScope())
	if p.Gw != nil && !p.V6 && p.Scope >= rtScopeLink {
		return p, fail("a route through a gateway cannot have scope %d (link or narrower)", p.Scope)
	}
	// Other flags the host reports (linkdown, dead, offload) describe its
	// own state and cannot be set; only onlink is a request.
	p.OnLink = r.GetFlags()&rtnhFOnlink != 0
	if mtu := r.GetMtu(); mtu != 0 {
		lo := uint32(MinMTU)
		if p.V6 {
			lo = MinMTUv6
		}
		if mtu < lo || mtu > MaxMTU {
			return p, fail("MTU %d is out of range [%d, %d]", mtu, lo, MaxMTU)
		}
		p.MTU = int(mtu)
	}
	return p, nil
}

// parseDest reads a route destination: a CIDR, or a bare address meaning
// a host route. Host bits are cleared, as "ip route" does not but the
// kernel requires.
func parseDest(s string) (*net.IPNet, error) {
	if !strings.Contains(s, "/") {
		ip, err := parseIP(s)
		if err != nil {
			return nil, err
		}
		return &net.IPNet{IP: ip, Mask: net.CIDRMask(8*len(ip), 8*len(ip))}, nil
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid CIDR", s)
	}
	pfx = pfx.Masked()
	addr := pfx.Addr().Unmap()
	bits := pfx.Bits()
	if pfx.Addr().Is4In6() {
		bits -= 96
		if bits < 0 {
			return nil, fmt.Errorf("%q is not a valid CIDR", s)
		}
	}
	return &net.IPNet{IP: net.IP(addr.AsSlice()), Mask: net.CIDRMask(bits, addr.BitLen())}, nil
}

// parseRoutes validates a whole table and orders it for installation:
// routes without a gateway (device and link-scope routes, which make the
// gateways reachable) first, then routes through gateways, each group in
// request order.
func parseRoutes(routes []*typespb.Route) ([]routePlan, error) {
	if len(routes) > maxRoutes {
		return nil, hostinput.Invalid("%d routes, more than %d", len(routes), maxRoutes)
	}
	var direct, viaGw []routePlan
	for i, r := range routes {
		p, err := parseRoute(i, r)
		if err != nil {
			return nil, err
		}
		if p.Gw == nil {
			direct = append(direct, p)
		} else {
			viaGw = append(viaGw, p)
		}
	}
	return append(direct, viaGw...), nil
}

// checkGateways verifies that every gateway is reachable on its device
// when the new table is in place: through a route without gateway on the
// same device in the request, through the prefix of an address of that
// device (onLink, by device name), or because it is an IPv6 link-local
// address or the route says onlink.
func checkGateways(routes []routePlan, onLink map[string][]*net.IPNet) error {
	for _, r := range routes {
		if r.Gw == nil || r.OnLink || (r.V6 && r.Gw.IsLinkLocalUnicast()) {
			continue
		}
		ok := false
		for _, d := range routes {
			if d.Gw == nil && d.Device == r.Device && d.Dst.Contains(r.Gw) {
				ok = true
				break
			}
		}
		for _, n := range onLink[r.Device] {
			if ok {
				break
			}
			ok = n.Contains(r.Gw)
		}
		if !ok {
			return hostinput.Invalid("route %d (%s): gateway %s is not reachable: no address or route without gateway on %s covers it",
				r.Pos, r, r.Gw, r.Device)
		}
	}
	return nil
}

// neighPlan is one validated ARP/NDP neighbour.
type neighPlan struct {
	Device string
	IP     net.IP
	MAC    net.HardwareAddr
	State  int
	Flags  int
}

// parseNeighbor validates one protocol neighbour.
func parseNeighbor(pos int, n *typespb.ARPNeighbor) (neighPlan, error) {
	var p neighPlan
	if n == nil {
		return p, hostinput.Invalid("neighbour %d is missing", pos)
	}
	if n.GetToIPAddress() == nil || strings.TrimSpace(n.GetToIPAddress().GetAddress()) == "" {
		return p, hostinput.Invalid("neighbour %d: IP address is empty", pos)
	}
	ip, err := parseIP(strings.TrimSpace(n.GetToIPAddress().GetAddress()))
	if err != nil {
		return p, fmt.Errorf("neighbour %d: %w", pos, err)
	}
	p.IP = ip
	if err := ValidateName(n.GetDevice()); err != nil {
		return p, fmt.Errorf("neighbour %d (%s): device: %w", pos, ip, err)
	}
	p.Device = n.GetDevice()
	if ll := strings.TrimSpace(n.GetLladdr()); ll != "" {
		mac, err := net.ParseMAC(ll)
		if err != nil {
			return p, hostinput.Invalid("neighbour %d (%s): link-layer address %q: %v", pos, ip, ll, err)
		}
		p.MAC = mac
	}
	switch st := n.GetState(); {
	case st == 0:
		p.State = nudPermanent
	case st < 0 || st > 0xff:
		return p, hostinput.Invalid("neighbour %d (%s): state %#x is not a NUD state", pos, ip, st)
	default:
		p.State = int(st)
	}
	if n.GetFlags() < 0 || n.GetFlags() > 0xff {
		return p, hostinput.Invalid("neighbour %d (%s): flags %#x are out of range", pos, ip, n.GetFlags())
	}
	p.Flags = int(n.GetFlags())
	return p, nil
}

// familyOf gives the protocol family of an address.
func familyOf(ip net.IP) typespb.IPFamily {
	if ip.To4() != nil {
		return typespb.IPFamily_v4
	}
	return typespb.IPFamily_v6
}

// ipAddressOf converts a host address with prefix to the protocol form.
func ipAddressOf(n *net.IPNet) *typespb.IPAddress {
	ones, _ := n.Mask.Size()
	return &typespb.IPAddress{Family: familyOf(n.IP), Address: n.IP.String(), Mask: strconv.Itoa(ones)}
}
