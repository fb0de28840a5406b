//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/guestpath"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

func init() {
	registerSharedGuestTest("ContainerIDsCannotReachTheShare", (*suite).testIDsCannotReachShare)
	registerSharedGuestTest("FailedCreateWithSandboxIDKeepsShare", (*suite).testFailedCreateKeepsShare)
	registerSharedGuestTest("FSGidOnEphemeralAndLocal", (*suite).testFSGid)
}

// runToExit creates container cid running args, returns its stdout once
// it exited with status 0, and removes it.
func (s *suite) runToExit(t *testing.T, cid string, args []string, opts ...fixture.SpecOption) string {
	t.Helper()
	s.createContainer(t, cid, args, opts...)
	out := s.readStdout(t, cid, cid)
	if st := s.wait(t, cid, cid); st != 0 {
		t.Fatalf("container %s exited %d, output %q", cid, st, out)
	}
	s.remove(t, cid)
	return out
}

// Container ids equal to directory names of the guest layout used to
// become /run/kata-containers/<id>: id "shared" was the parent of the
// virtio-fs share, and removing that container deleted host files.
func (s *suite) testIDsCannotReachShare(t *testing.T) {
	sentinels := map[string]string{
		filepath.Join(s.share, "sentinel.txt"):       "top\n",
		filepath.Join(s.share, "keep", "nested.txt"): "nested\n",
	}
	for p, content := range sentinels {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ids := []string{"shared", "sandbox", "containers", "bundles", "libcontainer", "kata-containers"}
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			if out := s.runToExit(t, id, []string{"echo", "ran-" + id}); out != "ran-"+id+"\n" {
				t.Fatalf("stdout = %q", out)
			}
			for p, content := range sentinels {
				b, err := os.ReadFile(p)
				if err != nil || string(b) != content {
					t.Fatalf("host file %s after container %q was removed: %q, %v", p, id, b, err)
				}
			}
		})
	}
	// The share and the sandbox's shm still serve new containers.
	out := s.runToExit(t, "after-ids", []string{"sh", "-c", "echo ok > /dev/shm/probe && cat /dev/shm/probe"})
	if out != "ok\n" {
		t.Fatalf("container after the id checks: stdout %q", out)
	}
}

// Kata's pause container has the sandbox id. A CreateContainer with that
// id that fails must not release the sandbox's storages: the share would
// be unmounted and no container could start any more.
func (s *suite) testFailedCreateKeepsShare(t *testing.T) {
	// No rootfs is written for it: the create fails after the storage step.
	_, err := s.cli.Agent.CreateContainer(s.rpcCtx(t), &pb.CreateContainerRequest{
		ContainerId: sandboxID, ExecId: sandboxID,
		OCI: fixture.Spec(sandboxID, sandboxID, []string{"true"}),
	})
	if err == nil {
		s.remove(t, sandboxID)
		t.Fatal("CreateContainer without a rootfs succeeded")
	}
	t.Logf("failed as intended: %v", err)
	if out := s.runToExit(t, "after-failed-create", []string{"echo", "share-still-there"}); out != "share-still-there\n" {
		t.Fatalf("stdout = %q", out)
	}
}

// fsgid=N (a pod's securityContext.fsGroup) on ephemeral (tmpfs) and
// local (disk) emptyDirs: the volume is mounted and its root belongs to
// group N with the setgid bit and group rwx.
func (s *suite) testFSGid(t *testing.T) {
	const cid, gid = "fsgid", "3000"
	eph := guestpath.SandboxStorageDir + "/ephemeral/fsgid-mem"
	local := guestpath.SandboxStorageDir + "/local/fsgid-disk"
	storages := []*pb.Storage{
		{Driver: "ephemeral", Source: "tmpfs", Fstype: "tmpfs", MountPoint: eph, Options: []string{"fsgid=" + gid}},
		{Driver: "local", Source: "local", Fstype: "local", MountPoint: local, Options: []string{"mode=0777", "fsgid=" + gid}},
	}
	withVolumes := func(spec *pb.Spec) {
		spec.Mounts = append(spec.Mounts,
			&pb.Mount{Destination: "/mem", Type: "bind", Source: eph, Options: []string{"rbind", "rw"}},
			&pb.Mount{Destination: "/disk", Type: "bind", Source: local, Options: []string{"rbind", "rw"}},
		)
	}
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, cid), s.bb); err != nil {
		t.Fatal(err)
	}
	ctx := s.rpcCtx(t)
	_, err := s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid, ExecId: cid, Storages: storages,
		OCI: fixture.Spec(sandboxID, cid, []string{"stat", "-c", "%n %g %A", "/mem", "/disk"}, withVolumes),
	})
	check(t, "CreateContainer with fsgid storages", err)
	_, err = s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
	check(t, "StartContainer", err)
	out := s.readStdout(t, cid, cid)
	if st := s.wait(t, cid, cid); st != 0 {
		t.Fatalf("stat exited %d: %q", st, out)
	}
	s.remove(t, cid)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("stat output %q", out)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		// "/mem 3000 drwxrwsrwt": group 3000, group rw and setgid ('s').
		if len(f) != 3 || f[1] != gid || len(f[2]) != 10 || f[2][4:7] != "rws" {
			t.Errorf("%q: want group %s with group rwx and the setgid bit", l, gid)
		}
	}
	t.Logf("in the container: %s", strings.Join(lines, "; "))
}
