//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// The disk is hot-plugged behind a PCIe root port at slot 05 of the root
// bus; the runtime then names it by PCI path "05/00" (slot 00 on the
// port's secondary bus).
const (
	blkRootPort     = "rp1"
	blkRootPortSlot = 0x05
	blkPCIPath      = "05/00"
	blkImageSize    = 16 << 20
)

// mkfsExt4 writes an ext4 image of blkImageSize at img holding files.
func mkfsExt4(t *testing.T, img string, files map[string]string) {
	t.Helper()
	src := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mkfsExt4Image(t, img, blkImageSize, "-d", src)
}

// mkfsExt4Image writes an ext4 image of size bytes at img, with mkfs.ext4's
// extra args (-d DIR fills it from a tree).
func mkfsExt4Image(t *testing.T, img string, size int64, args ...string) {
	t.Helper()
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	args = append(append([]string{"-F", "-q"}, args...), img)
	if out, err := exec.Command("mkfs.ext4", args...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 (install e2fsprogs): %v: %s", err, out)
	}
}

// TestBlockStorage drives the agent's "blk" storage driver as the Kata
// runtime does for a block volume: the host hot-plugs a virtio-blk disk
// holding an ext4 file system, names it by PCI path in a container's
// storages, and bind-mounts the storage's mount point into the container.
// The container must read what the host put on the disk, and what it
// writes must be on the disk once the container is gone and the storage
// released (unmounted cleanly).
func TestBlockStorage(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "debugfs", "dumpe2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (install e2fsprogs): %v", tool, err)
		}
	}
	img := filepath.Join(t.TempDir(), "vol.img")
	mkfsExt4(t, img, map[string]string{"from-host.txt": "written-on-host\n"})

	s := bootSuite(t,
		vmm.WithPCIeRootPort(blkRootPort, blkRootPortSlot),
		vmm.WithAppend("agent.hotplug_timeout=10"),
	)
	s.createSandbox(s.rpcCtx(t), t, nil)

	const cid = "blkvol"
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, cid), s.bb); err != nil {
		t.Fatal(err)
	}
	mountPoint := fixture.GuestSharedDir + cid + "-blk"
	storage := func(pciPath string) *pb.Storage {
		return &pb.Storage{
			Driver:     "blk",
			Source:     pciPath,
			Fstype:     "ext4",
			Options:    []string{},
			MountPoint: mountPoint,
		}
	}
	withVolume := func(spec *pb.Spec) {
		spec.Mounts = append(spec.Mounts, &pb.Mount{
			Destination: "/data", Type: "bind", Source: mountPoint, Options: []string{"rbind", "rw"},
		})
	}
	script := "cat /data/from-host.txt && grep ' /data ' /proc/mounts && echo written-in-guest > /data/from-guest.txt"

	t.Run("MalformedPCIPathRefused", func(t *testing.T) {
		_, err := s.cli.Agent.CreateContainer(s.rpcCtx(t), &pb.CreateContainerRequest{
			ContainerId: cid, ExecId: cid,
			OCI:      fixture.Spec(sandboxID, cid, []string{"true"}, withVolume),
			Storages: []*pb.Storage{storage("zz/00")},
		})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("CreateContainer with PCI path zz/00 = %v, want InvalidArgument", err)
		}
	})

	ctx := s.rpcCtx(t)
	plugged := time.Now()
	if err := s.vm.QMP().HotplugBlock(ctx, "vol1", img, blkRootPort, false); err != nil {
		t.Fatalf("QMP hot-plug: %v", err)
	}
	_, err := s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid, ExecId: cid,
		OCI:      fixture.Spec(sandboxID, cid, []string{"sh", "-c", script}, withVolume),
		Storages: []*pb.Storage{storage(blkPCIPath)},
	})
	check(t, "CreateContainer with blk storage at "+blkPCIPath, err)
	t.Logf("device_add to container created (disk found and mounted): %v", time.Since(plugged).Round(time.Millisecond))
	_, err = s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
	check(t, "StartContainer", err)

	out := s.readStdout(t, cid, cid)
	if st := s.wait(t, cid, cid); st != 0 {
		t.Fatalf("container exited %d, output %q", st, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "written-on-host" {
		t.Fatalf("container output %q, want the host's file and the /data mount", out)
	}
	// "/dev/vda /data ext4 rw,relatime 0 0": the disk itself, not a copy.
	if f := strings.Fields(lines[1]); len(f) < 3 || !strings.HasPrefix(f[0], "/dev/vd") || f[2] != "ext4" {
		t.Errorf("/data is mounted as %q, want ext4 from a /dev/vd* disk", lines[1])
	}
	t.Logf("in the container: %s", lines[1])
	s.remove(t, cid)

	// Release shut the file system down, not only detached it: its
	// journal is closed (ext4 reports its state "clean" even while
	// mounted; needs_recovery is what a live mount leaves), and the
	// guest's write is in the image's blocks, where debugfs, which
	// replays no journal, reads it.
	dump, err := exec.Command("dumpe2fs", "-h", img).Output()
	if err != nil {
		t.Fatalf("dumpe2fs: %v", err)
	}
	if !strings.Contains(string(dump), "Filesystem state:         clean") || strings.Contains(string(dump), "needs_recovery") {
		t.Errorf("file system still live after RemoveContainer (detached, not unmounted?):\n%s", dump)
	}
	got, err := exec.Command("debugfs", "-R", "cat /from-guest.txt", img).Output()
	if err != nil {
		t.Fatalf("debugfs: %v", err)
	}
	if string(got) != "written-in-guest\n" {
		t.Errorf("image holds from-guest.txt = %q, want %q", got, "written-in-guest\n")
	}
}
