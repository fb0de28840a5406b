//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// Root ports of the swap and resize guest: a blank disk for AddSwap, an
// ext4 volume (a swap file on it, then grown), and one left empty.
const (
	swapPort, swapSlot   = "rpswap", 0x05
	volPort, volSlot     = "rpvol", 0x06
	emptyPort, emptySlot = "rpempty", 0x07
	swapDiskSize         = 32 << 20
	volSize              = 64 << 20
	volGrownSize         = 128 << 20
	swapFileSize         = 8 << 20
)

// swapTotalKiB is the guest's SwapTotal (meminfo is the guest's own in a
// container).
func (s *suite) swapTotalKiB(t *testing.T, cid string) uint64 {
	t.Helper()
	out, st := s.exec(t, cid, false, "cat", "/proc/meminfo")
	if st != 0 {
		t.Fatalf("cat /proc/meminfo exited %d", st)
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "SwapTotal:" {
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("SwapTotal line %q: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no SwapTotal in /proc/meminfo (kernel without CONFIG_SWAP?): %q", out)
	return 0
}

func wantRPC(t *testing.T, what string, err error, code codes.Code, says string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), says) {
		t.Errorf("%s = %v, want %v saying %q", what, err, code, says)
	}
}

// TestSwapAndResize drives AddSwap, AddSwapPath and ResizeVolume as the
// Kata runtime does, with disks hot-plugged through QMP. It boots its own
// guest: swap would change the shared guest's memory figures, and the
// disks need hot-pluggable root ports.
func TestSwapAndResize(t *testing.T) {
	dir := t.TempDir()
	swapImg := filepath.Join(dir, "swap.img")
	if err := os.WriteFile(swapImg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(swapImg, swapDiskSize); err != nil { // blank, as a fresh disk
		t.Fatal(err)
	}
	volImg := filepath.Join(dir, "vol.img")
	mkfsExt4Size(t, volImg, volSize)

	s := bootSuite(t,
		vmm.WithPCIeRootPort(swapPort, swapSlot),
		vmm.WithPCIeRootPort(volPort, volSlot),
		vmm.WithPCIeRootPort(emptyPort, emptySlot),
		vmm.WithAppend("agent.hotplug_timeout=5"),
	)
	s.createSandbox(s.rpcCtx(t), t, nil)

	// A long-lived container holding the ext4 volume at /data.
	const cid = "vol"
	mountPoint := fixture.GuestSharedDir + cid + "-blk"
	if err := s.vm.QMP().HotplugBlock(s.rpcCtx(t), "vol", volImg, volPort, false); err != nil {
		t.Fatalf("QMP hot-plug of the volume: %v", err)
	}
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, cid), s.bb); err != nil {
		t.Fatal(err)
	}
	_, err := s.cli.Agent.CreateContainer(s.rpcCtx(t), &pb.CreateContainerRequest{
		ContainerId: cid, ExecId: cid,
		OCI: fixture.Spec(sandboxID, cid, []string{"sleep", "3600"}, func(spec *pb.Spec) {
			spec.Mounts = append(spec.Mounts, &pb.Mount{Destination: "/data", Type: "bind", Source: mountPoint, Options: []string{"rbind", "rw"}})
		}),
		Storages: []*pb.Storage{{Driver: "blk", Source: "06/00", Fstype: "ext4", Options: []string{}, MountPoint: mountPoint}},
	})
	check(t, "CreateContainer with the ext4 volume", err)
	_, err = s.cli.Agent.StartContainer(s.rpcCtx(t), &pb.StartContainerRequest{ContainerId: cid})
	check(t, "StartContainer", err)

	t.Run("AddSwapHotpluggedDisk", func(t *testing.T) {
		before := s.swapTotalKiB(t, cid)
		if err := s.vm.QMP().HotplugBlock(s.rpcCtx(t), "swap", swapImg, swapPort, false); err != nil {
			t.Fatalf("QMP hot-plug: %v", err)
		}
		start := time.Now()
		_, err := s.cli.Agent.AddSwap(s.rpcCtx(t), &pb.AddSwapRequest{PCIPath: []uint32{swapSlot, 0}})
		check(t, "AddSwap 05/00", err)
		after := s.swapTotalKiB(t, cid)
		// The header page is not swap: 32 MiB gives 8191 pages of 4 KiB.
		t.Logf("SwapTotal %d -> %d KiB (AddSwap took %v)", before, after, time.Since(start).Round(time.Millisecond))
		if after-before != swapDiskSize/1024-4 {
			t.Fatalf("SwapTotal grew by %d KiB, want %d", after-before, swapDiskSize/1024-4)
		}
		// The guest wrote the header on the host's blank image.
		b, err := os.ReadFile(swapImg)
		if err != nil {
			t.Fatal(err)
		}
		if string(b[4096-10:4096]) != "SWAPSPACE2" {
			t.Errorf("no swap signature on the image: %q", b[4096-10:4096])
		}
		_, err = s.cli.Agent.AddSwap(s.rpcCtx(t), &pb.AddSwapRequest{PCIPath: []uint32{swapSlot, 0}})
		wantRPC(t, "AddSwap of the same disk again", err, codes.AlreadyExists, "in use")
	})

	t.Run("AddSwapUnknownPCIPathTimesOut", func(t *testing.T) {
		start := time.Now()
		_, err := s.cli.Agent.AddSwap(s.rpcCtx(t), &pb.AddSwapRequest{PCIPath: []uint32{emptySlot, 0}})
		wantRPC(t, "AddSwap on an empty port", err, codes.DeadlineExceeded, "07/00")
		t.Logf("answered after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("AddSwapPathFile", func(t *testing.T) {
		before := s.swapTotalKiB(t, cid)
		out, st := s.exec(t, cid, false, "dd", "if=/dev/zero", "of=/data/swapfile", "bs=1M", "count="+strconv.Itoa(swapFileSize>>20), "conv=fsync")
		if st != 0 {
			t.Fatalf("dd exited %d: %s", st, out)
		}
		_, err := s.cli.Agent.AddSwapPath(s.rpcCtx(t), &pb.AddSwapPathRequest{Path: mountPoint + "/swapfile"})
		check(t, "AddSwapPath", err)
		after := s.swapTotalKiB(t, cid)
		t.Logf("SwapTotal %d -> %d KiB", before, after)
		if after-before != swapFileSize/1024-4 {
			t.Fatalf("SwapTotal grew by %d KiB, want %d", after-before, swapFileSize/1024-4)
		}
		out, _ = s.exec(t, cid, false, "cat", "/proc/swaps")
		if !strings.Contains(out, "/swapfile") || !strings.Contains(out, "/dev/vd") {
			t.Errorf("/proc/swaps does not list the file and the disk:\n%s", out)
		}
		t.Logf("/proc/swaps:\n%s", out)
	})

	t.Run("AddSwapPathHostile", func(t *testing.T) {
		for _, c := range []struct {
			path string
			code codes.Code
			says string
		}{
			{"swapfile", codes.InvalidArgument, "not absolute"},
			{"/etc/passwd", codes.InvalidArgument, "outside"},
			{mountPoint, codes.InvalidArgument, "directory"},
			{mountPoint + "/lost+found/../swapfile", codes.InvalidArgument, "not clean"},
			{mountPoint + "/missing", codes.NotFound, "missing"},
			{"/dev/null", codes.InvalidArgument, "character device"},
		} {
			_, err := s.cli.Agent.AddSwapPath(s.rpcCtx(t), &pb.AddSwapPathRequest{Path: c.path})
			wantRPC(t, "AddSwapPath "+c.path, err, c.code, c.says)
		}
	})

	t.Run("ResizeVolumeExt4", func(t *testing.T) {
		total := func() uint64 {
			r, err := s.cli.Agent.GetVolumeStats(s.rpcCtx(t), &pb.VolumeStatsRequest{VolumeGuestPath: mountPoint})
			check(t, "GetVolumeStats", err)
			return r.Usage[0].Total
		}
		before := total()
		_, err := s.cli.Agent.ResizeVolume(s.rpcCtx(t), &pb.ResizeVolumeRequest{VolumeGuestPath: mountPoint, Size: volGrownSize})
		wantRPC(t, "ResizeVolume before the disk grew", err, codes.FailedPrecondition, "grow the disk first")
		if err := s.vm.QMP().Execute(s.rpcCtx(t), "block_resize", map[string]any{"node-name": "vol-node", "size": volGrownSize}, nil); err != nil {
			t.Fatalf("QMP block_resize: %v", err)
		}
		// The guest learns the new capacity from a config interrupt, a
		// moment after QEMU answers.
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err = s.cli.Agent.ResizeVolume(s.rpcCtx(t), &pb.ResizeVolumeRequest{VolumeGuestPath: mountPoint, Size: volGrownSize})
			if status.Code(err) != codes.FailedPrecondition || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		check(t, "ResizeVolume", err)
		after := total()
		t.Logf("GetVolumeStats total %d -> %d bytes", before, after)
		if after < before+(volGrownSize-volSize)*3/4 {
			t.Fatalf("the filesystem did not grow: %d -> %d bytes", before, after)
		}
		out, _ := s.exec(t, cid, false, "df", "-k", "/data")
		t.Logf("in the container:\n%s", out)

		_, err = s.cli.Agent.ResizeVolume(s.rpcCtx(t), &pb.ResizeVolumeRequest{VolumeGuestPath: mountPoint, Size: volSize})
		wantRPC(t, "ResizeVolume shrinking", err, codes.InvalidArgument, "shrinking")
		_, err = s.cli.Agent.ResizeVolume(s.rpcCtx(t), &pb.ResizeVolumeRequest{VolumeGuestPath: strings.TrimSuffix(fixture.GuestSharedDir, "/"), Size: volGrownSize})
		wantRPC(t, "ResizeVolume of the virtio-fs share", err, codes.FailedPrecondition, "not a filesystem on a block device")
		_, err = s.cli.Agent.ResizeVolume(s.rpcCtx(t), &pb.ResizeVolumeRequest{VolumeGuestPath: "/etc", Size: volGrownSize})
		wantRPC(t, "ResizeVolume outside", err, codes.InvalidArgument, "outside")
	})
}

// mkfsExt4Size writes an empty ext4 image of size bytes at img, with 4 KiB
// blocks (mkfs picks 1 KiB for small images): a swap file's extents are
// then page-aligned and every page of it counts as swap.
func mkfsExt4Size(t *testing.T, img string, size int64) {
	t.Helper()
	mkfsExt4Image(t, img, size, "-b", "4096")
}
