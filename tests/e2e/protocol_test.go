//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// sandboxDNS is the dns list of the shared guest's CreateSandbox: a node's
// systemd-resolved resolv.conf as the runtime forwards it (the file split
// on "\n"), with comments, "search .", an inline comment and a CRLF line.
var sandboxDNS = []string{
	"# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).",
	"# Do not edit.",
	"",
	"nameserver 10.96.0.10 # cluster DNS",
	"options edns0 trust-ad\r",
	"search .",
	"",
}

// wantResolvConf is what a container of that sandbox must read.
const wantResolvConf = "# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).\n" +
	"# Do not edit.\n\nnameserver 10.96.0.10 # cluster DNS\noptions edns0 trust-ad\nsearch .\n"

func init() {
	registerSharedGuestTest("DNSLinesAsSent", (*suite).testDNSLinesAsSent)
	registerSharedGuestTest("GetDiagnosticDataTerminationLog", (*suite).testTerminationLog)
	registerSharedGuestTest("ProtocolDriftAnswers", (*suite).testProtocolDriftAnswers)
	registerSharedGuestTest("UpstreamMetricFamilies", (*suite).testUpstreamMetricFamilies)
}

// The sandbox was created with systemd-resolved's lines (the whole
// sandbox failed on "search ." before); containers see them as sent.
func (s *suite) testDNSLinesAsSent(t *testing.T) {
	const cid = "dns"
	s.createContainer(t, cid, []string{"cat", "/etc/resolv.conf"})
	out := s.readStdout(t, cid, cid)
	if st := s.wait(t, cid, cid); st != 0 {
		t.Errorf("cat exited %d", st)
	}
	if out != wantResolvConf {
		t.Errorf("container's /etc/resolv.conf:\n%q\nwant\n%q", out, wantResolvConf)
	}
	s.remove(t, cid)
}

// As the runtime does with shared_fs=none: after the container exited,
// GetDiagnosticData reads the termination message the container wrote to
// its terminationMessagePath, a file bind-mounted from the guest.
func (s *suite) testTerminationLog(t *testing.T) {
	const cid = "term"
	const msg = "fatal: disk full\ncheck /data"
	name := cid + "-0123abcd-termination-log"
	if err := os.WriteFile(filepath.Join(s.share, name), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	withTermLog := func(spec *pb.Spec) {
		spec.Mounts = append(spec.Mounts, &pb.Mount{
			Destination: "/dev/termination-log", Type: "bind", Source: fixture.GuestSharedDir + name, Options: []string{"rbind", "rw"},
		})
		spec.Annotations["io.kubernetes.container.terminationMessagePath"] = "/dev/termination-log"
		spec.Annotations["io.kubernetes.container.terminationMessagePolicy"] = "File"
	}
	s.createContainer(t, cid, []string{"sh", "-c", "printf '" + strings.ReplaceAll(msg, "\n", `\n`) + "' > /dev/termination-log; exit 2"}, withTermLog)
	if st := s.wait(t, cid, cid); st != 2 {
		t.Fatalf("container exited %d, want 2", st)
	}
	r, err := s.cli.Agent.GetDiagnosticData(s.rpcCtx(t), &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: cid})
	check(t, "GetDiagnosticData", err)
	if r.Data != msg {
		t.Errorf("termination message %q, want %q", r.Data, msg)
	}
	_, err = s.cli.Agent.GetDiagnosticData(s.rpcCtx(t), &pb.GetDiagnosticDataRequest{LogType: "kernel_log", ContainerId: cid})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"kernel_log"`) {
		t.Errorf("unsupported log type: %v, want InvalidArgument naming it", err)
	}
	s.remove(t, cid)
	_, err = s.cli.Agent.GetDiagnosticData(s.rpcCtx(t), &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: cid})
	if status.Code(err) != codes.NotFound {
		t.Errorf("removed container: %v, want NotFound", err)
	}
}

// The newer methods and the malformed network requests answer as upstream.
func (s *suite) testProtocolDriftAnswers(t *testing.T) {
	_, err := s.cli.Agent.AddSwapPath(s.rpcCtx(t), &pb.AddSwapPathRequest{Path: "/dev/vdz"})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "/dev/vdz") {
		t.Errorf("AddSwapPath of a missing device: %v, want NotFound naming the path", err)
	}
	before, err := s.cli.Agent.ListRoutes(s.rpcCtx(t), &pb.ListRoutesRequest{})
	check(t, "ListRoutes", err)
	_, err = s.cli.Agent.UpdateRoutes(s.rpcCtx(t), &pb.UpdateRoutesRequest{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "routes message is missing") {
		t.Errorf("UpdateRoutes without routes: %v, want InvalidArgument", err)
	}
	_, err = s.cli.Agent.AddARPNeighbors(s.rpcCtx(t), &pb.AddARPNeighborsRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("AddARPNeighbors without neighbors: %v, want InvalidArgument", err)
	}
	after, err := s.cli.Agent.ListRoutes(s.rpcCtx(t), &pb.ListRoutesRequest{})
	check(t, "ListRoutes", err)
	if len(after.Routes) != len(before.Routes) {
		t.Errorf("routes changed by refused requests: %v -> %v", before.Routes, after.Routes)
	}
}

// The guest's GetMetrics carries upstream's family names, which dashboards
// query.
func (s *suite) testUpstreamMetricFamilies(t *testing.T) {
	m, err := s.cli.Agent.GetMetrics(s.rpcCtx(t), &pb.GetMetricsRequest{})
	check(t, "GetMetrics", err)
	for _, fam := range []string{
		"kata_agent_scrape_count", "kata_agent_threads", "kata_agent_total_time", "kata_agent_total_vm",
		"kata_agent_total_rss", "kata_agent_proc_status", "kata_agent_proc_stat",
		"kata_agent_process_cpu_seconds_total", "kata_agent_process_open_fds", "kata_agent_process_max_fds",
		"kata_agent_process_resident_memory_bytes", "kata_agent_process_virtual_memory_bytes",
		"kata_agent_process_start_time_seconds",
		"kata_guest_load", "kata_guest_tasks", "kata_guest_cpu_time", "kata_guest_vm_stat",
		"kata_guest_netdev_stat", "kata_guest_meminfo",
	} {
		if !strings.Contains(m.Metrics, "\n# TYPE "+fam+" ") {
			t.Errorf("family %s missing from the guest's metrics", fam)
		}
	}
	for _, line := range []string{`kata_guest_meminfo{item="mem_total"} `, `kata_guest_cpu_time{cpu="total",item="user"} `, `kata_guest_netdev_stat{interface="lo",item="recv_bytes"} `} {
		if !strings.Contains(m.Metrics, "\n"+line) {
			t.Errorf("no sample %q", line)
		}
	}
	// Present where the guest has what they describe.
	for _, fam := range []string{"kata_agent_io_stat", "kata_guest_diskstat", "kata_guest_filesystem_bytes"} {
		t.Logf("%s present: %v", fam, strings.Contains(m.Metrics, "\n# TYPE "+fam+" "))
	}
}

// The NIC is hot-plugged behind a PCIe root port at slot 06 of the root
// bus, so its PCI path is "06/00".
const (
	nicRootPort     = "rpnic"
	nicRootPortSlot = 0x06
	nicPCIPath      = "06/00"
	nicMAC          = "02:00:00:00:0e:01"
)

// TestNICHotplugDevicePath: the runtime sends UpdateInterface with the
// NIC's PCI path in devicePath right after device_add, and the guest may
// still be enumerating the NIC then. Here the request even comes first,
// half a second before device_add: the agent must wait for the NIC at
// that path and configure it, rather than answer "Link not found".
func TestNICHotplugDevicePath(t *testing.T) {
	s := bootSuite(t,
		vmm.WithPCIeRootPort(nicRootPort, nicRootPortSlot),
		vmm.WithAppend("agent.hotplug_timeout=10"),
	)
	ctx := s.rpcCtx(t)
	type result struct {
		iface *typespb.Interface
		err   error
		at    time.Time
	}
	done := make(chan result, 1)
	go func() {
		got, err := s.cli.Agent.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{Interface: &typespb.Interface{
			Device:      "eth0",
			Name:        "eth0",
			HwAddr:      nicMAC,
			Mtu:         1500,
			DevicePath:  nicPCIPath,
			IPAddresses: []*typespb.IPAddress{{Family: typespb.IPFamily_v4, Address: "10.0.2.15", Mask: "24"}},
		}})
		done <- result{got, err, time.Now()}
	}()
	time.Sleep(500 * time.Millisecond)
	if err := s.vm.QMP().Execute(ctx, "netdev_add", map[string]any{"type": "user", "id": "net1"}, nil); err != nil {
		t.Fatalf("QMP netdev_add: %v", err)
	}
	plugged := time.Now()
	if err := s.vm.QMP().DeviceAdd(ctx, "virtio-net-pci", "nic1", map[string]any{"netdev": "net1", "bus": nicRootPort, "mac": nicMAC}); err != nil {
		t.Fatalf("QMP device_add: %v", err)
	}
	r := <-done
	check(t, "UpdateInterface with devicePath "+nicPCIPath+" sent before device_add", r.err)
	t.Logf("device_add to interface configured: %v", r.at.Sub(plugged).Round(time.Millisecond))
	if r.iface.Name != "eth0" || r.iface.HwAddr != nicMAC {
		t.Errorf("UpdateInterface answered %v", r.iface)
	}
	ifs, err := s.cli.Agent.ListInterfaces(ctx, &pb.ListInterfacesRequest{})
	check(t, "ListInterfaces", err)
	found := false
	for _, i := range ifs.Interfaces {
		if i.HwAddr == nicMAC {
			found = true
			if i.Name != "eth0" || len(i.IPAddresses) == 0 || i.IPAddresses[0].Address != "10.0.2.15" {
				t.Errorf("hot-plugged NIC is %v", i)
			}
		}
	}
	if !found {
		t.Errorf("hot-plugged NIC not listed: %v", ifs.Interfaces)
	}
}
