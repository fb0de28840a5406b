//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// Subtests of the guest image and the host kit (issue 13): what ordinary
// container images need from the guest.
func init() {
	registerSharedGuestTest("VirtiofsUserXattrs", (*suite).testVirtiofsXattrs)
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
