package network

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"reflect"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// The converters below take what the host sends for UpdateInterface,
// UpdateRoutes and AddARPNeighbors. Each target checks: no panic; every
// refusal is InvalidArgument; and what is accepted survives the agent's own
// conversion back to the protocol (what ListInterfaces/ListRoutes report)
// and a second parse unchanged.

func FuzzParseInterface(f *testing.F) {
	f.Add("02:00:ca:fe:00:01", "eth0", uint64(1500), uint32(0), "10.0.0.2", "24", uint8(0), "fe80::1", "64")
	f.Add("02:00:ca:fe:00:01", "eth0", uint64(1280), uint32(iffNoARP), "192.168.1.9/16", "", uint8(1), "::ffff:10.1.1.1", "255.255.255.0")
	f.Add("", "a/b", uint64(1<<40), uint32(0), "1.2.3.4%eth0", "33", uint8(7), "", "")
	f.Fuzz(func(t *testing.T, hw, name string, mtu uint64, flags uint32, a1, m1 string, fam uint8, a2, m2 string) {
		in := &typespb.Interface{HwAddr: hw, Name: name, Mtu: mtu, RawFlags: flags, IPAddresses: []*typespb.IPAddress{
			{Address: a1, Mask: m1, Family: typespb.IPFamily(fam)}, {Address: a2, Mask: m2}}}
		if a2 == "" && m2 == "" {
			in.IPAddresses = in.IPAddresses[:1]
		}
		p, err := parseInterface(in)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("refusal is not InvalidArgument: %v", err)
			}
			return
		}
		if ValidateName(p.Name) != nil || p.MTU < MinMTU || p.MTU > MaxMTU || len(p.Addrs) > 2 {
			t.Fatalf("accepted plan out of range: %+v", p)
		}
		back := &typespb.Interface{HwAddr: p.HwAddr.String(), Name: p.Name, Mtu: uint64(p.MTU)}
		if p.NoARP {
			back.RawFlags = iffNoARP
		}
		for _, a := range p.Addrs {
			if a.IP.To4() == nil && p.MTU < MinMTUv6 {
				t.Fatalf("IPv6 address %v on an MTU of %d", a, p.MTU)
			}
			back.IPAddresses = append(back.IPAddresses, ipAddressOf(a))
		}
		p2, err := parseInterface(back)
		if err != nil {
			t.Fatalf("the agent's own description of %+v is refused: %v", p, err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip changed the interface:\n%+v\n%+v", p, p2)
		}
	})
}

func FuzzParseRoute(f *testing.F) {
	f.Add("10.0.0.0/24", "", "10.0.0.2", "eth0", uint8(0), uint32(rtScopeLink), uint32(0), uint32(0))
	f.Add("default", "10.0.0.1", "", "eth0", uint8(0), uint32(0), uint32(rtnhFOnlink), uint32(1400))
	f.Add("2001:db8::/64", "fe80::1", "2001:db8::2/64", "eth1", uint8(1), uint32(0), uint32(0), uint32(1280))
	f.Add("::ffff:10.0.0.0/104", "::ffff:10.0.0.1", "", "eth0", uint8(0), uint32(0), uint32(0), uint32(0))
	f.Fuzz(func(t *testing.T, dst, gw, src, dev string, fam uint8, scope, flags, mtu uint32) {
		r := &typespb.Route{Dest: dst, Gateway: gw, Source: src, Device: dev, Family: typespb.IPFamily(fam), Scope: scope, Flags: flags, Mtu: mtu}
		p, err := parseRoute(0, r)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("refusal is not InvalidArgument: %v", err)
			}
			return
		}
		bits := 32
		if p.V6 {
			bits = 128
		}
		if ones, total := p.Dst.Mask.Size(); total != bits || ones > bits || len(p.Dst.IP)*8 != bits {
			t.Fatalf("destination %v does not match the family (v6 %v)", p.Dst, p.V6)
		}
		if !p.Dst.IP.Equal(p.Dst.IP.Mask(p.Dst.Mask)) {
			t.Fatalf("destination %v has host bits set", p.Dst)
		}
		back := routeOf(toNetlinkRoute(p, 1), p.Device)
		p2, err := parseRoute(0, back)
		if err != nil {
			t.Fatalf("the agent's own description %v of %v is refused: %v", back, p, err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip changed the route:\n%+v\n%+v", p, p2)
		}
		// A table of it twice, and the gateway check over it.
		plans, err := parseRoutes([]*typespb.Route{r, back})
		if err != nil || len(plans) != 2 {
			t.Fatalf("table of an accepted route: %d plans, %v", len(plans), err)
		}
		if err := checkGateways(plans, nil); err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("gateway check refusal is not InvalidArgument: %v", err)
		}
	})
}

func FuzzParseNeighbor(f *testing.F) {
	f.Add("10.0.0.1", "eth0", "02:00:ca:fe:00:01", int32(0), int32(0))
	f.Add("fe80::1", "eth1", "", int32(2), int32(0x80))
	f.Add(" 1.2.3.4 ", "", "zz", int32(-1), int32(256))
	f.Fuzz(func(t *testing.T, ip, dev, ll string, state, flags int32) {
		n := &typespb.ARPNeighbor{ToIPAddress: &typespb.IPAddress{Address: ip}, Device: dev, Lladdr: ll, State: state, Flags: flags}
		p, err := parseNeighbor(0, n)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("refusal is not InvalidArgument: %v", err)
			}
			return
		}
		if p.State <= 0 || p.State > 0xff || p.Flags < 0 || p.Flags > 0xff || ValidateName(p.Device) != nil {
			t.Fatalf("accepted neighbour out of range: %+v", p)
		}
		back := &typespb.ARPNeighbor{ToIPAddress: ipAddressOf(hostNet(p.IP)), Device: p.Device, State: int32(p.State), Flags: int32(p.Flags)}
		if p.MAC != nil {
			back.Lladdr = p.MAC.String()
		}
		p2, err := parseNeighbor(0, back)
		if err != nil || !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip: %+v -> %+v, %v", p, p2, err)
		}
	})
}

// FuzzIPTablesRestore: the agent hands SetIPTables data to the tool
// byte for byte (a stand-in tool echoes it), or refuses it as
// InvalidArgument without running anything when it holds a NUL byte.
func FuzzIPTablesRestore(f *testing.F) {
	f.Add([]byte("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j DROP\nCOMMIT\n"))
	f.Add([]byte("*nat\nCOMMIT\n\x00"))
	f.Add([]byte{})
	cat, err := exec.LookPath("cat")
	if err != nil {
		f.Skip("no cat")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ran := false
		ipt := IPTables{
			LookPath: func(string) (string, error) { return cat, nil },
			Command: func(ctx context.Context, path string, args ...string) *exec.Cmd {
				ran = true
				return exec.CommandContext(ctx, path)
			},
			Timeout: time.Minute,
		}
		out, err := ipt.Restore(context.Background(), len(data)%2 == 1, data)
		if bytes.IndexByte(data, 0) >= 0 {
			if !errdefs.IsInvalidArgument(err) || ran {
				t.Fatalf("NUL input: ran %v, error %v", ran, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("the tool got %q, the host sent %q", out, data)
		}
	})
}

// FuzzLimitedBuffer: whatever the writes, the buffer never holds more than
// its limit, holds a prefix of what was written, and reports overflow
// exactly when more was written than fits.
func FuzzLimitedBuffer(f *testing.F) {
	f.Add([]byte("abcdefgh"), uint8(3), uint8(5), false)
	f.Add([]byte("abcdefgh"), uint8(0), uint8(8), true)
	f.Fuzz(func(t *testing.T, data []byte, chunk, limit uint8, truncate bool) {
		b := &limitedBuffer{limit: int(limit), truncate: truncate}
		n := max(int(chunk), 1)
		written := 0
		var failed error
		for p := data; len(p) > 0; {
			c := min(n, len(p))
			w, err := b.Write(p[:c])
			if err != nil {
				failed = err
				break
			}
			if w != c {
				t.Fatalf("short write %d of %d without error", w, c)
			}
			written += c
			p = p[c:]
		}
		over := len(data) > int(limit)
		if b.buf.Len() > int(limit) || !bytes.HasPrefix(data, b.buf.Bytes()) {
			t.Fatalf("holds %q of %q, limit %d", b.buf.Bytes(), data, limit)
		}
		if b.overflow != over {
			t.Fatalf("overflow %v after %d of %d bytes into %d", b.overflow, written, len(data), limit)
		}
		if truncate {
			if failed != nil || b.buf.Len() != min(len(data), int(limit)) {
				t.Fatalf("truncating buffer: %d bytes kept of %d, error %v", b.buf.Len(), len(data), failed)
			}
		} else if (failed != nil) != over {
			t.Fatalf("failure %v for %d bytes into %d", failed, len(data), limit)
		}
	})
}

// hostNet is ip with a full-length prefix.
func hostNet(ip net.IP) *net.IPNet {
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(8*len(ip), 8*len(ip))}
}
