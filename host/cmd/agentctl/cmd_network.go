package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

func init() {
	register(&command{name: "update-interface", args: "(--file FILE | --hwaddr MAC --name NAME --mtu N [--addr CIDR]... [--noarp])",
		summary: "configure the link with hardware address MAC", run: runUpdateInterface})
	register(&command{name: "update-routes", args: "(--file FILE | ROUTE...)",
		summary: `replace the routing table; ROUTE is "DEST|default [via GW] dev DEV [src IP] [scope S] [onlink] [inet6]"`, run: runUpdateRoutes})
	register(&command{name: "list-interfaces", summary: "list the guest's interfaces", run: runListInterfaces})
	register(&command{name: "list-routes", summary: "list the guest's routes", run: runListRoutes})
	register(&command{name: "add-arp", args: "(--file FILE | IP LLADDR DEV [--state N] [--flags N])",
		summary: "add static ARP/NDP neighbours", run: runAddARP})
	register(&command{name: "get-iptables", args: "[-6]", summary: "print iptables-save (ip6tables-save) output", run: runGetIPTables})
	register(&command{name: "set-iptables", args: "[-6] [FILE|-]", summary: "feed rules to iptables-restore (ip6tables-restore)", run: runSetIPTables})
}

// newFlags makes a FlagSet for a command that reports errors instead of
// exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// readInput reads a file, or stdin for "-".
func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

// readJSON fills m from a JSON file in protobuf's JSON mapping (both the
// proto field names and their lowerCamel forms are accepted).
func readJSON(path string, m proto.Message) error {
	b, err := readInput(path)
	if err != nil {
		return err
	}
	if err := protojson.Unmarshal(b, m); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// interfaceFromFlags builds an Interface from update-interface's flags.
func interfaceFromFlags(args []string) (*typespb.Interface, error) {
	fs := newFlags("update-interface")
	file := fs.String("file", "", "JSON Interface message (- for stdin)")
	hw := fs.String("hwaddr", "", "hardware address of the link to configure")
	name := fs.String("name", "", "new interface name")
	mtu := fs.Uint64("mtu", 0, "MTU")
	noarp := fs.Bool("noarp", false, "set IFF_NOARP")
	var addrs stringList
	fs.Var(&addrs, "addr", "address in CIDR form (repeatable)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *file != "" {
		if *hw != "" || *name != "" || *mtu != 0 || len(addrs) > 0 || *noarp {
			return nil, fmt.Errorf("--file excludes the other flags")
		}
		var i typespb.Interface
		if err := readJSON(*file, &i); err != nil {
			return nil, err
		}
		return &i, nil
	}
	if *hw == "" || *name == "" || *mtu == 0 {
		return nil, fmt.Errorf("--hwaddr, --name and --mtu are required (or --file)")
	}
	i := &typespb.Interface{HwAddr: *hw, Name: *name, Mtu: *mtu}
	if *noarp {
		i.RawFlags = 0x80 // IFF_NOARP
	}
	for _, a := range addrs {
		ip, n, err := net.ParseCIDR(a)
		if err != nil {
			return nil, fmt.Errorf("--addr %q: want an address in CIDR form such as 10.0.0.2/24", a)
		}
		ones, _ := n.Mask.Size()
		fam := typespb.IPFamily_v4
		if ip.To4() == nil {
			fam = typespb.IPFamily_v6
		}
		i.IPAddresses = append(i.IPAddresses, &typespb.IPAddress{Family: fam, Address: ip.String(), Mask: strconv.Itoa(ones)})
	}
	return i, nil
}

func runUpdateInterface(ctx context.Context, c *agentclient.Client, args []string) error {
	i, err := interfaceFromFlags(args)
	if err != nil {
		return err
	}
	r, err := c.Agent.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{Interface: i})
	if err != nil {
		return err
	}
	return emit(r, func(io.Writer) error { printInterfaces([]*typespb.Interface{r}); return nil })
}

// scopes maps the names "ip route" uses to rtm_scope values.
var scopes = map[string]uint32{"global": 0, "universe": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}

// parseRouteSpec reads one route written the way "ip route" prints it.
func parseRouteSpec(spec string) (*typespb.Route, error) {
	f := strings.Fields(spec)
	if len(f) == 0 {
		return nil, fmt.Errorf("empty route")
	}
	r := &typespb.Route{}
	if f[0] != "default" {
		r.Dest = f[0]
	}
	v6 := strings.Contains(f[0], ":")
	for i := 1; i < len(f); i++ {
		key := f[i]
		switch key {
		case "onlink":
			r.Flags |= 0x4 // RTNH_F_ONLINK
			continue
		case "inet6", "-6":
			v6 = true
			continue
		}
		if i+1 >= len(f) {
			return nil, fmt.Errorf("route %q: %s needs a value", spec, key)
		}
		val := f[i+1]
		i++
		switch key {
		case "via":
			r.Gateway = val
			v6 = v6 || strings.Contains(val, ":")
		case "dev":
			r.Device = val
		case "src":
			r.Source = val
		case "scope":
			if s, ok := scopes[val]; ok {
				r.Scope = s
			} else if n, err := strconv.ParseUint(val, 10, 8); err == nil {
				r.Scope = uint32(n)
			} else {
				return nil, fmt.Errorf("route %q: unknown scope %q", spec, val)
			}
		default:
			return nil, fmt.Errorf("route %q: unknown keyword %q", spec, key)
		}
	}
	if r.Device == "" {
		return nil, fmt.Errorf("route %q: dev is required", spec)
	}
	if v6 {
		r.Family = typespb.IPFamily_v6
	}
	return r, nil
}

func runUpdateRoutes(ctx context.Context, c *agentclient.Client, args []string) error {
	fs := newFlags("update-routes")
	file := fs.String("file", "", `JSON Routes message, {"Routes": [...]} (- for stdin)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	routes := &pb.Routes{}
	switch {
	case *file != "" && fs.NArg() > 0:
		return fmt.Errorf("--file excludes route arguments")
	case *file != "":
		if err := readJSON(*file, routes); err != nil {
			return err
		}
	default:
		// No arguments is allowed: it empties the table.
		for _, spec := range fs.Args() {
			r, err := parseRouteSpec(spec)
			if err != nil {
				return err
			}
			routes.Routes = append(routes.Routes, r)
		}
	}
	res, err := c.Agent.UpdateRoutes(ctx, &pb.UpdateRoutesRequest{Routes: routes})
	if err != nil {
		return err
	}
	return emit(res, func(io.Writer) error { printRoutes(res.GetRoutes()); return nil })
}

func runListInterfaces(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	r, err := c.Agent.ListInterfaces(ctx, &pb.ListInterfacesRequest{})
	if err != nil {
		return err
	}
	return emit(r, func(io.Writer) error { printInterfaces(r.GetInterfaces()); return nil })
}

func runListRoutes(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	r, err := c.Agent.ListRoutes(ctx, &pb.ListRoutesRequest{})
	if err != nil {
		return err
	}
	return emit(r, func(io.Writer) error { printRoutes(r.GetRoutes()); return nil })
}

func printInterfaces(ifs []*typespb.Interface) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tHWADDR\tMTU\tTYPE\tFLAGS\tADDRESSES")
	for _, i := range ifs {
		var addrs []string
		for _, a := range i.GetIPAddresses() {
			addrs = append(addrs, a.GetAddress()+"/"+a.GetMask())
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%#x\t%s\n", i.GetName(), i.GetHwAddr(), i.GetMtu(), i.GetType(), i.GetRawFlags(), strings.Join(addrs, " "))
	}
	w.Flush()
}

// routeString writes a route the way "ip route" would, so that it can be
// passed back to update-routes.
func routeString(r *typespb.Route) string {
	var b strings.Builder
	d := r.GetDest()
	if d == "" || d == "0.0.0.0/0" || d == "::/0" {
		d = "default"
	}
	b.WriteString(d)
	if g := r.GetGateway(); g != "" {
		b.WriteString(" via " + g)
	}
	b.WriteString(" dev " + r.GetDevice())
	if s := r.GetSource(); s != "" {
		b.WriteString(" src " + s)
	}
	if r.GetScope() != 0 {
		name := strconv.Itoa(int(r.GetScope()))
		for k, v := range scopes {
			if v == r.GetScope() {
				name = k
			}
		}
		b.WriteString(" scope " + name)
	}
	if r.GetFlags()&0x4 != 0 {
		b.WriteString(" onlink")
	}
	if r.GetFamily() == typespb.IPFamily_v6 && d == "default" && r.GetGateway() == "" {
		b.WriteString(" inet6")
	}
	return b.String()
}

func printRoutes(rs []*typespb.Route) {
	for _, r := range rs {
		fmt.Fprintln(out, routeString(r))
	}
}

func runAddARP(ctx context.Context, c *agentclient.Client, args []string) error {
	fs := newFlags("add-arp")
	file := fs.String("file", "", `JSON ARPNeighbors message, {"ARPNeighbors": [...]} (- for stdin)`)
	state := fs.Int("state", 0, "NUD state (0: permanent)")
	flags := fs.Int("flags", 0, "NTF flags")
	if err := fs.Parse(args); err != nil {
		return err
	}
	neighs := &pb.ARPNeighbors{}
	if *file != "" {
		if fs.NArg() != 0 {
			return fmt.Errorf("--file excludes positional arguments")
		}
		if err := readJSON(*file, neighs); err != nil {
			return err
		}
	} else {
		if fs.NArg() != 3 {
			return fmt.Errorf("want IP LLADDR DEV (or --file)")
		}
		ip := fs.Arg(0)
		fam := typespb.IPFamily_v4
		if strings.Contains(ip, ":") {
			fam = typespb.IPFamily_v6
		}
		neighs.ARPNeighbors = []*typespb.ARPNeighbor{{
			ToIPAddress: &typespb.IPAddress{Family: fam, Address: ip},
			Lladdr:      fs.Arg(1),
			Device:      fs.Arg(2),
			State:       int32(*state),
			Flags:       int32(*flags),
		}}
	}
	if _, err := c.Agent.AddARPNeighbors(ctx, &pb.AddARPNeighborsRequest{Neighbors: neighs}); err != nil {
		return err
	}
	return emit(neighs, nil)
}

func ipv6Flag(name string, args []string) (bool, []string, error) {
	fs := newFlags(name)
	v6 := fs.Bool("6", false, "IPv6 (ip6tables)")
	if err := fs.Parse(args); err != nil {
		return false, nil, err
	}
	return *v6, fs.Args(), nil
}

func runGetIPTables(ctx context.Context, c *agentclient.Client, args []string) error {
	v6, rest, err := ipv6Flag("get-iptables", args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("unexpected arguments %q", rest)
	}
	r, err := c.Agent.GetIPTables(ctx, &pb.GetIPTablesRequest{IsIpv6: v6})
	if err != nil {
		return err
	}
	return emit(map[string]string{"data": string(r.GetData())}, func(w io.Writer) error {
		_, err := w.Write(r.GetData())
		return err
	})
}

func runSetIPTables(ctx context.Context, c *agentclient.Client, args []string) error {
	v6, rest, err := ipv6Flag("set-iptables", args)
	if err != nil {
		return err
	}
	path := "-"
	switch len(rest) {
	case 0:
	case 1:
		path = rest[0]
	default:
		return fmt.Errorf("want at most one FILE")
	}
	data, err := readInput(path)
	if err != nil {
		return err
	}
	r, err := c.Agent.SetIPTables(ctx, &pb.SetIPTablesRequest{IsIpv6: v6, Data: data})
	if err != nil {
		return err
	}
	return emit(map[string]string{"data": string(r.GetData())}, func(w io.Writer) error {
		_, err := w.Write(r.GetData())
		return err
	})
}
