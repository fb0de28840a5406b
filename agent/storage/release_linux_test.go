package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// loopExt4 makes an ext4 image of size bytes and attaches it to a loop
// device; it skips the test where the tools or loop devices are missing.
func loopExt4(t *testing.T, size int64) (img, dev string) {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "losetup", "debugfs", "dumpe2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	img = filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	loop, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	dev = strings.TrimSpace(string(loop))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	return img, dev
}

// ext4Live reports whether an ext4 file system on dev is still alive
// (mounted anywhere, or detached and not yet shut down): ext4 lists each
// live one under /sys/fs/ext4. Opening the device to find out would not
// do: a child forked meanwhile would hold the descriptor, and the device
// with it.
func ext4Live(t *testing.T, dev string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join("/sys/fs/ext4", filepath.Base(dev)))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// imageFile reads name from the image's root as debugfs sees it: the
// blocks on the disk, without replaying the journal.
func imageFile(t *testing.T, img, name string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat /"+name, img).Output()
	if err != nil {
		t.Fatalf("debugfs: %v", err)
	}
	return string(out)
}

// forkWhile runs short-lived children until the returned stop is (first)
// called,
// as the agent does (hooks, container inits) while storages are released:
// each fork holds a copy of the descriptor table until its exec.
func forkWhile(t *testing.T) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				_ = exec.Command("/bin/true").Run()
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// TestRealBlockReleaseIsComplete: when Release returns, the block
// device's file system is shut down, not only detached: it is gone from
// the kernel, the journal is clean and what was written is in the image. The
// runtime unplugs the disk right after RemoveContainer; a lazily detached
// file system would lose what it had not yet written back. Children
// forked meanwhile (which briefly hold copies of every descriptor) must
// not defer the shutdown.
func TestRealBlockReleaseIsComplete(t *testing.T) {
	m, root := realManager(t)
	img, dev := loopExt4(t, 32<<20)
	m.cfg.Devices = loopDevices{node: dev}
	mp := filepath.Join(root, "sandbox/storage/vol")
	st := &pb.Storage{Driver: "blk", Source: "02", Fstype: "ext4", MountPoint: mp}
	ctx := context.Background()

	stop := forkWhile(t)
	defer stop()
	const rounds = 30
	for i := range rounds {
		if err := m.Mount(ctx, "c1", []*pb.Storage{st}); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("round-%d", i)
		if err := os.WriteFile(filepath.Join(mp, name), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := m.Release(ctx, "c1"); err != nil {
			t.Fatal(err)
		}
		if ext4Live(t, dev) {
			t.Fatalf("round %d: the file system on %s still alive after Release", i, dev)
		}
	}
	stop()

	out, err := exec.Command("dumpe2fs", "-h", img).Output()
	if err != nil {
		t.Fatalf("dumpe2fs: %v", err)
	}
	if strings.Contains(string(out), "needs_recovery") {
		t.Errorf("journal needs recovery after Release: the file system was not shut down")
	}
	for _, i := range []int{0, rounds - 1} {
		name := fmt.Sprintf("round-%d", i)
		if got := imageFile(t, img, name); got != name+"\n" {
			t.Errorf("image holds %s = %q, want %q", name, got, name+"\n")
		}
	}
}

// TestRealBusyBlockReleaseWritesBack: a file system someone still holds
// (a file open on it outside any container) cannot be unmounted; Release
// detaches it without waiting, and what was written to it is on the disk
// by then: the image, its journal replayed as the next mount would, holds
// the file.
func TestRealBusyBlockReleaseWritesBack(t *testing.T) {
	m, root := realManager(t)
	img, dev := loopExt4(t, 32<<20)
	m.cfg.Devices = loopDevices{node: dev}
	mp := filepath.Join(root, "sandbox/storage/vol")
	ctx := context.Background()
	if err := m.Mount(ctx, "c1", []*pb.Storage{{Driver: "blk", Source: "02", Fstype: "ext4", MountPoint: mp}}); err != nil {
		t.Fatal(err)
	}
	const want = "written while busy\n"
	if err := os.WriteFile(filepath.Join(mp, "data"), []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
	holder, err := os.Open(mp)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := m.Release(ctx, "c1"); err != nil {
		t.Fatalf("Release of a busy mount: %v", err)
	}
	if mounted(t, mp) {
		t.Fatalf("%s still mounted after Release", mp)
	}
	if !ext4Live(t, dev) {
		t.Fatalf("the open file no longer holds the file system: the test proves nothing")
	}
	// Replay the journal on a copy, as mounting the disk again would.
	replayed := filepath.Join(t.TempDir(), "replayed.img")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(replayed, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fy", replayed).CombinedOutput(); err != nil {
		// Exit status 1: errors corrected (the journal replayed).
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck: %v: %s", err, out)
		}
	}
	if got := imageFile(t, replayed, "data"); got != want {
		t.Fatalf("image holds data = %q, want %q", got, want)
	}
}

// TestRealFailedMountIsUnmounted: when the work after a mount fails (a
// block volume's fsGroup, say), the new mount is undone for real before
// the error is returned, as a release does: the file system is gone, and
// so is the mount point made for it, with children forked throughout.
func TestRealFailedMountIsUnmounted(t *testing.T) {
	m, root := realManager(t)
	_, dev := loopExt4(t, 32<<20)
	key := filepath.Join(root, "sandbox/storage/vol")
	failed := errors.New("after failed")
	r := &request{st: &pb.Storage{Driver: "blk", Fstype: "ext4"}, key: key, target: key}
	stop := forkWhile(t)
	defer stop()
	for i := range 30 {
		_, err := m.mountFS(dev, r, "ext4", MountOptions{}, func(string) error { return failed })
		if !errors.Is(err, failed) {
			t.Fatalf("round %d: mountFS = %v, want the after error", i, err)
		}
		if ext4Live(t, dev) {
			t.Fatalf("round %d: the file system on %s still alive after the failed mount", i, dev)
		}
		if _, err := os.Lstat(key); !os.IsNotExist(err) {
			t.Fatalf("round %d: mount point left behind: %v", i, err)
		}
	}
}
