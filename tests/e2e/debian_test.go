//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// DefaultDebianRootfs is where `make debian-rootfs` caches a minimal
// Debian bookworm tree built with debootstrap (outside the tree, like the
// kernel). E2E_DEBIAN_ROOTFS points elsewhere.
const DefaultDebianRootfs = "/var/cache/sandbox-guest/debian/bookworm-minbase"

func init() {
	registerSharedGuestTest("DebianUserland", (*suite).testDebianUserland)
}

func debianRootfs(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("E2E_DEBIAN_ROOTFS")
	if dir == "" {
		dir = DefaultDebianRootfs
	}
	if _, err := os.Stat(filepath.Join(dir, "var/lib/dpkg/status")); err != nil {
		msg := "no Debian rootfs at " + dir + " (make debian-rootfs): " + err.Error()
		if os.Getenv("E2E_REQUIRE") == "1" && os.Getenv("E2E_DEBIAN_ROOTFS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// A Debian userland runs as a container over virtio-fs, as Kata pods run
// ordinary images. Each step fails if one of the guest image's promises
// regresses: apt and gpgv break in a FIPS-mode guest (the default image
// must be non-FIPS), user.* xattrs need virtiofsd's xattr support, and
// the kernel must carry netfilter for the guest's iptables.
func (s *suite) testDebianUserland(t *testing.T) {
	src := debianRootfs(t)
	const cid = "debian"
	dst := fixture.HostRootfs(s.share, cid)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("copy the Debian rootfs: %v: %s", err, out)
	}
	// Debian's own archive signature, as apt would check it.
	if rel, err := os.ReadFile("/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease"); err == nil {
		if err := os.WriteFile(filepath.Join(dst, "tmp/InRelease"), rel, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tool := s.buildTool(t, "./xattrtool", cid, "xattrtool")
	s.createContainerIn(t, cid, []string{"/bin/sleep", "3600"})
	defer s.remove(t, cid)

	sh := func(t *testing.T, script string) string {
		t.Helper()
		out, st := s.exec(t, cid, false, "/bin/sh", "-c", script+" 2>&1")
		if st != 0 {
			t.Fatalf("%s: status %d:\n%s", script, st, out)
		}
		return out
	}
	// On a FIPS node (E2E_APPEND=fips=1) the container's libgcrypt is in
	// FIPS mode, as on a FIPS host: apt and gpgv must then fail the way
	// docs/decisions.md says, and succeed everywhere else.
	fipsOut, _ := s.exec(t, cid, false, "cat", "/proc/sys/crypto/fips_enabled")
	fipsGuest := strings.TrimSpace(fipsOut) == "1"
	shFIPS := func(t *testing.T, script string) string {
		t.Helper()
		if !fipsGuest {
			return sh(t, script)
		}
		out, st := s.exec(t, cid, false, "/bin/sh", "-c", script+" 2>&1")
		if st == 0 {
			t.Fatalf("%s succeeded in a FIPS guest, where libgcrypt refuses it:\n%s", script, out)
		}
		t.Skipf("FIPS guest: fails as documented (status %d)", st)
		return ""
	}
	t.Run("DpkgDatabase", func(t *testing.T) {
		if out := sh(t, "dpkg --audit"); strings.TrimSpace(out) != "" {
			t.Errorf("dpkg --audit reports:\n%s", out)
		}
		out := sh(t, `dpkg-query -W -f='${db:Status-Abbrev}\n' | sort | uniq -c`)
		if f := strings.Fields(out); len(f) != 2 || f[1] != "ii" {
			t.Errorf("package states:\n%s", out)
		}
	})
	t.Run("AptInstallsLocalDeb", func(t *testing.T) {
		out := shFIPS(t, `set -e
mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/e2e
printf 'Package: e2e-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: e2e <e2e@example.org>\nDescription: e2e test package\n' > /tmp/pkg/DEBIAN/control
echo hello-from-deb > /tmp/pkg/usr/share/e2e/hello
dpkg-deb --build /tmp/pkg /tmp/e2e-hello.deb >/dev/null
apt-get install -y -q /tmp/e2e-hello.deb >/dev/null
dpkg-query -W -f='${Status}\n' e2e-hello
cat /usr/share/e2e/hello`)
		if !strings.Contains(out, "install ok installed") || !strings.Contains(out, "hello-from-deb") {
			t.Errorf("apt-get install of a local .deb:\n%s", out)
		}
	})
	t.Run("GpgvVerifiesDebianArchive", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(dst, "tmp/InRelease")); err != nil {
			t.Skip("the host has no bookworm InRelease to verify")
		}
		shFIPS(t, "gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg /tmp/InRelease")
	})
	t.Run("NonRootUserWritesFiles", func(t *testing.T) {
		out := sh(t, `set -e
useradd -m -u 1000 -s /bin/sh app
su app -c 'echo mine > /home/app/file && id -u && stat -c %U:%a /home/app/file'`)
		if f := strings.Fields(out); len(f) != 2 || f[0] != "1000" || f[1] != "app:644" {
			t.Errorf("non-root user:\n%s", out)
		}
	})
	t.Run("ShellPipeline", func(t *testing.T) {
		if out := sh(t, `seq 1 10000 | sort -rn | awk 'NR==1{top=$1} {s+=$1} END{printf "%d %d\n", top, s}'`); strings.TrimSpace(out) != "10000 50005000" {
			t.Errorf("pipeline = %q", out)
		}
	})
	t.Run("LargeStdoutIntact", func(t *testing.T) {
		// Under readStdout's 1 MiB guard, well over one 16 KiB read.
		sum := strings.Fields(sh(t, "head -c 786432 /dev/urandom > /tmp/blob && sha256sum /tmp/blob"))[0]
		out, st := s.exec(t, cid, false, "cat", "/tmp/blob")
		h := sha256.Sum256([]byte(out))
		if st != 0 || len(out) != 786432 || hex.EncodeToString(h[:]) != sum {
			t.Errorf("cat of 768 KiB: status %d, %d bytes, sha256 %x, want %s", st, len(out), h, sum)
		}
	})
	t.Run("UserXattr", func(t *testing.T) {
		out := sh(t, tool+" set /etc/hostname user.e2e debian && "+tool+" get /etc/hostname user.e2e")
		if out != "debian" {
			t.Errorf("user xattr = %q", out)
		}
	})
	t.Run("KernelOptions", func(t *testing.T) {
		// netfilter's connection tracking is in the kernel.
		sh(t, "test -e /proc/sys/net/netfilter/nf_conntrack_max")
		// In-guest iptables answers (an Unimplemented fails here).
		_, err := s.cli.Agent.GetIPTables(s.rpcCtx(t), &pb.GetIPTablesRequest{})
		check(t, "GetIPTables", err)
	})
}

// createContainerIn creates and starts container cid on a rootfs that is
// already in the share (createContainer writes a busybox one first).
func (s *suite) createContainerIn(t *testing.T, cid string, args []string) {
	t.Helper()
	ctx := s.rpcCtx(t)
	_, err := s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: cid, ExecId: cid, OCI: fixture.Spec(sandboxID, cid, args)})
	check(t, "CreateContainer "+cid, err)
	_, err = s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
	check(t, "StartContainer "+cid, err)
}
