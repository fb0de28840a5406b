package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/wiring"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// End to end: agentctl -> ttrpc -> server -> network.Manager -> netlink, in
// a namespace this test creates.
func TestAgentctlNetworkAgainstNamespace(t *testing.T) {
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
	name := fmt.Sprintf("sgctl-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	hw, _ := net.ParseMAC("02:00:00:00:0d:01")
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0", HardwareAddr: hw}, PeerName: "v1"}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	path, _ := serveAgent(t, dir, config.Default(), hostRoots(dir), wiring.WithNetlink(h))
	run := func(args ...string) (string, string, int) { return runAgentctl(t, path, args...) }
	if o, e, rc := run("update-interface", "--hwaddr", "02:00:00:00:0d:01", "--name", "eth0", "--mtu", "1450", "--addr", "10.4.0.2/24"); rc != 0 || !strings.Contains(o, "eth0") {
		t.Fatalf("update-interface rc=%d out=%q err=%q", rc, o, e)
	}
	if o, e, rc := run("update-routes", "default via 10.4.0.1 dev eth0", "10.6.0.0/16 dev eth0 scope link"); rc != 0 || !strings.Contains(o, "default via 10.4.0.1 dev eth0") {
		t.Fatalf("update-routes rc=%d out=%q err=%q", rc, o, e)
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
	found := false
	for _, i := range ifs.Interfaces {
		if i.Name == "eth0" && i.Mtu == 1450 && len(i.IPAddresses) == 1 && i.IPAddresses[0].Address == "10.4.0.2" && i.IPAddresses[0].Mask == "24" {
			found = true
		}
	}
	if !found {
		t.Errorf("list-interfaces --json lacks eth0 as configured: %v", &ifs)
	}
	if _, e, rc := run("add-arp", "10.4.0.1", "02:00:00:00:0d:09", "eth0"); rc != 0 {
		t.Errorf("add-arp: %q", e)
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
