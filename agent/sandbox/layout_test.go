package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/container"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/guestpath"
)

func within(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// A container id becomes BundleRoot/<id>: nothing else may live there, and
// the bundles may not live in the runtime's tree, where an id such as
// "shared" or "sandbox" names the share or the sandbox storages.
func TestBundleRootAliasesNothing(t *testing.T) {
	others := map[string]string{
		"storage root": guestpath.KataRoot, "share": guestpath.SharedDir, "sandbox storages": guestpath.SandboxStorageDir,
		"sandbox dir": guestpath.SandboxDir, "state root": guestpath.StateDir,
	}
	for name, p := range others {
		if within(guestpath.BundleDir, p) || within(p, guestpath.BundleDir) {
			t.Errorf("bundle root %s and %s %s overlap: a container id can name it", guestpath.BundleDir, name, p)
		}
	}
	for _, p := range []string{guestpath.SandboxDir, guestpath.StateDir} {
		if within(guestpath.KataRoot, p) {
			t.Errorf("agent directory %s lies in the runtime's tree %s, where storages are mounted", p, guestpath.KataRoot)
		}
	}
	if err := container.ValidateID("container", sandboxStorageOwner); err == nil {
		t.Errorf("the sandbox storage owner %q is a valid container id", sandboxStorageOwner)
	}
}

// fakeStorage counts references per owner.
type fakeStorage struct {
	mu   sync.Mutex
	refs map[string]int
}

func (f *fakeStorage) Mount(_ context.Context, owner string, st []*pb.Storage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refs[owner] += len(st)
	return nil
}

func (f *fakeStorage) Release(_ context.Context, owner string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.refs, owner)
	return nil
}

func (f *fakeStorage) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.refs {
		n += c
	}
	return n
}

// Kata's pause container has the sandbox id: its failing create must not
// release the sandbox's storages (the share every container needs).
func TestFailedCreateWithSandboxIDKeepsSandboxStorages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("CreateSandbox holds namespaces: needs root")
	}
	dir := t.TempDir()
	fs := &fakeStorage{refs: map[string]int{}}
	s := newTestSandbox(t, Config{BundleRoot: dir + "/bundles", SandboxDir: dir + "/sandbox", SharedDir: dir + "/shared",
		StateRoot: dir + "/state", Storage: fs})
	ctx := context.Background()
	share := &pb.Storage{Driver: "virtio-fs", Source: "kataShared", MountPoint: dir + "/shared"}
	if err := s.CreateSandbox(ctx, CreateSandboxRequest{ID: "sb1", Storages: []*pb.Storage{share}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.DestroySandbox(ctx) })
	err := s.CreateContainer(ctx, CreateContainerRequest{
		ID: "sb1", Storages: []*pb.Storage{share},
		Spec: &specs.Spec{Process: &specs.Process{Args: []string{"/pause"}}, Root: &specs.Root{Path: dir + "/no-such-rootfs"}},
	})
	if err == nil {
		t.Fatal("create with a missing rootfs succeeded")
	}
	if got := fs.total(); got != 1 {
		t.Fatalf("after the failed create the sandbox holds %d storage references, want 1: %v", got, fs.refs)
	}
}

func TestRemoveBundleUnlinksOnlyWhatItWrote(t *testing.T) {
	root := filepath.Join(t.TempDir(), "bundles")
	b := filepath.Join(root, "c1")
	if err := writeBundle(root, b, &specs.Spec{}); err != nil {
		t.Fatal(err)
	}
	if err := removeBundle(b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bundle left: %v", err)
	}
	// Anything the agent did not write stays, and so does a mount.
	if err := writeBundle(root, b, &specs.Spec{}); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(b, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	}
	sentinel := filepath.Join(mnt, "sentinel")
	if err := os.WriteFile(sentinel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeBundle(b); err == nil {
		t.Fatal("a bundle holding more than config.json was removed without error")
	}
	if _, err := os.Stat(sentinel); err != nil {
		t.Fatalf("removal walked into the bundle: %v", err)
	}
}
