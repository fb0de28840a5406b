package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/sandbox-guest/sandbox-guest/agent/hooks"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// shareStorage plays the share's mount: the hooks exist only once the
// sandbox storages are mounted.
type shareStorage struct {
	fakeStorage
	hookDir string
}

func (f *shareStorage) Mount(ctx context.Context, owner string, st []*pb.Storage) error {
	if err := os.MkdirAll(filepath.Join(f.hookDir, "poststop"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(f.hookDir, "poststop", "h"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		return err
	}
	return f.fakeStorage.Mount(ctx, owner, st)
}

// The guest hook path may lie on a sandbox storage (upstream scans after
// mounting them); a bad path fails CreateSandbox and leaves nothing held.
func TestGuestHooksScannedAfterSandboxStorages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("CreateSandbox holds namespaces: needs root")
	}
	dir := t.TempDir()
	fs := &shareStorage{fakeStorage: fakeStorage{refs: map[string]int{}}, hookDir: dir + "/shared/hooks"}
	s := newTestSandbox(t, Config{BundleRoot: dir + "/bundles", SandboxDir: dir + "/sandbox", SharedDir: dir + "/shared",
		StateRoot: dir + "/state", Storage: fs})
	ctx := context.Background()
	share := []*pb.Storage{{Driver: "virtio-fs", Source: "kataShared", MountPoint: dir + "/shared"}}

	err := s.CreateSandbox(ctx, CreateSandboxRequest{ID: "sb1", Storages: share, GuestHookPath: "shared/hooks"})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("relative hook path: %v", err)
	}
	if n := fs.total(); n != 0 {
		t.Fatalf("the failed CreateSandbox holds %d storage references", n)
	}
	if err := s.CreateSandbox(ctx, CreateSandboxRequest{ID: "sb1", Storages: share, GuestHookPath: fs.hookDir}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.DestroySandbox(ctx) })
	if hs := s.guestHooks.Hooks(hooks.Poststop); len(hs) != 1 {
		t.Errorf("poststop hooks %+v, want the one on the share", hs)
	}
}
