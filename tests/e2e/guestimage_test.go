//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// Subtests of the guest image and the host kit (issue 13): what ordinary
// container images need from the guest.
func init() {
	registerSharedGuestTest("VirtiofsUserXattrs", (*suite).testVirtiofsXattrs)
	registerSharedGuestTest("IPTablesRoundTrip", (*suite).testIPTablesRoundTrip)
}

// buildTool builds a static helper of this package's directory into the
// rootfs of container cid (on the host side of the share) as /name.
func (s *suite) buildTool(t *testing.T, pkg, cid, name string) string {
	t.Helper()
	dst := filepath.Join(fixture.HostRootfs(s.share, cid), name)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", dst, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return "/" + name
}

// user.* xattrs work on the virtio-fs share in both directions: virtiofsd
// runs with xattr support (host/vmm's default; Debian's virtiofsd has none
// unless asked, and setxattr then fails with EOPNOTSUPP).
func (s *suite) testVirtiofsXattrs(t *testing.T) {
	cid := s.sleeperContainer(t)
	tool := s.buildTool(t, "./xattrtool", cid, "xattrtool")
	hostFile := filepath.Join(fixture.HostRootfs(s.share, cid), "tmp", "xattr-file")
	if err := os.WriteFile(hostFile, []byte("data\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Guest writes, guest and host read.
	if out, st := s.exec(t, cid, false, tool, "set", "/tmp/xattr-file", "user.sandbox.guest", "from-guest"); st != 0 {
		t.Fatalf("setxattr in the container: status %d: %s", st, out)
	}
	if out, st := s.exec(t, cid, false, tool, "get", "/tmp/xattr-file", "user.sandbox.guest"); st != 0 || out != "from-guest" {
		t.Fatalf("getxattr in the container = %q (status %d), want from-guest", out, st)
	}
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(hostFile, "user.sandbox.guest", buf)
	if err != nil || string(buf[:n]) != "from-guest" {
		t.Fatalf("host sees user.sandbox.guest = %q, %v; want from-guest", buf[:max(n, 0)], err)
	}

	// Host writes, guest reads.
	if err := syscall.Setxattr(hostFile, "user.sandbox.host", []byte("from-host"), 0); err != nil {
		t.Fatal(err)
	}
	if out, st := s.exec(t, cid, false, tool, "get", "/tmp/xattr-file", "user.sandbox.host"); st != 0 || strings.TrimSpace(out) != "from-host" {
		t.Fatalf("getxattr of the host's attribute in the container = %q (status %d), want from-host", out, st)
	}
}

// SetIPTables then GetIPTables returns the same rules, for IPv4 and IPv6:
// the guest kernel has the x_tables modules and the image the tools. A
// rule set the tools refuse is InvalidArgument.
func (s *suite) testIPTablesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ipv6  bool
		rules string
	}{{"IPv4", false, fixture.IPv4Rules}, {"IPv6", true, fixture.IPv6Rules}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.cli.Agent.SetIPTables(s.rpcCtx(t), &pb.SetIPTablesRequest{IsIpv6: tc.ipv6, Data: []byte(tc.rules)})
			check(t, "SetIPTables", err)
			r, err := s.cli.Agent.GetIPTables(s.rpcCtx(t), &pb.GetIPTablesRequest{IsIpv6: tc.ipv6})
			check(t, "GetIPTables", err)
			want, got := fixture.SaveTables(tc.rules), fixture.SaveTables(string(r.GetData()))
			if len(want) == 0 {
				t.Fatal("empty rule set")
			}
			for name, w := range want {
				if got[name] != w {
					t.Errorf("table %s after the round trip:\n%s\nwant:\n%s\nfull output:\n%s", name, got[name], w, r.GetData())
				}
			}
		})
	}
	t.Run("RefusedRules", func(t *testing.T) {
		bad := "*filter\n-A INPUT -m no_such_match -j ACCEPT\nCOMMIT\n"
		_, err := s.cli.Agent.SetIPTables(s.rpcCtx(t), &pb.SetIPTablesRequest{Data: []byte(bad)})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("SetIPTables with an unknown match = %v, want InvalidArgument", err)
		}
	})
}
