package server

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/agent/storage"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

const (
	sIFDIR = 0o040000
	sIFLNK = 0o120000
	sIFREG = 0o100000
)

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("err = %v, want %s", err, code)
	}
}

func TestCopyFileChunksModeOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	root := t.TempDir()
	c := startServer(t, Options{CopyFileRoot: root})
	ctx := context.Background()
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<17) // 2 MiB: two 1 MiB chunks
	path := filepath.Join(root, "cid/rootfs/etc/hosts")
	chunk := 1 << 20
	for off := 0; off < len(content); off += chunk {
		_, err := c.Agent.CopyFile(ctx, &pb.CopyFileRequest{
			Path: path, FileSize: int64(len(content)), FileMode: sIFREG | 0o640, DirMode: 0o750,
			Uid: 1234, Gid: 5678, Offset: int64(off), Data: content[off : off+chunk],
		})
		if err != nil {
			t.Fatal(err)
		}
		if off == 0 {
			if _, err := os.Stat(path); err == nil {
				t.Fatal("file visible before the last chunk")
			}
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("content differs (len %d): %v", len(got), err)
	}
	fi, _ := os.Stat(path)
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o640 || st.Uid != 1234 || st.Gid != 5678 {
		t.Fatalf("mode %v uid %d gid %d", fi.Mode(), st.Uid, st.Gid)
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm() != 0o750 {
		t.Fatalf("parent mode %v, want 0750", di.Mode())
	}
	if _, err := os.Stat(path + ".tmp"); err == nil {
		t.Fatal("temporary file left behind")
	}

	// A directory and a symlink, as the runtime sends for secret volumes.
	dir := filepath.Join(root, "cid/vol/..2024_01_01")
	if _, err := c.Agent.CopyFile(ctx, &pb.CopyFileRequest{Path: dir, FileMode: sIFDIR | 0o755, DirMode: 0o755, Uid: 1, Gid: 2}); err != nil {
		t.Fatal(err)
	}
	if di, err := os.Stat(dir); err != nil || !di.IsDir() || di.Sys().(*syscall.Stat_t).Gid != 2 {
		t.Fatalf("directory: %v %v", di, err)
	}
	link := filepath.Join(root, "cid/vol/..data")
	for _, target := range []string{"..2024_01_01", "..2024_02_02"} {
		if _, err := c.Agent.CopyFile(ctx, &pb.CopyFileRequest{Path: link, FileMode: sIFLNK | 0o777, Data: []byte(target), Uid: 7, Gid: 8}); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(link); err != nil || got != target {
			t.Fatalf("symlink -> %q %v, want %q", got, err, target)
		}
	}
	var lst syscall.Stat_t
	syscall.Lstat(link, &lst)
	if lst.Uid != 7 || lst.Gid != 8 {
		t.Fatalf("symlink owner %d:%d", lst.Uid, lst.Gid)
	}
}

func TestCopyFileRefusesEscapes(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "shared")
	outside := filepath.Join(base, "outside")
	os.MkdirAll(root, 0o755)
	os.MkdirAll(outside, 0o755)
	// A symlinked parent inside the root that points outside it.
	if err := os.Symlink(outside, filepath.Join(root, "evil")); err != nil {
		t.Fatal(err)
	}
	// A symlink where the temporary file would go.
	os.MkdirAll(filepath.Join(root, "c2"), 0o755)
	os.Symlink(filepath.Join(outside, "planted"), filepath.Join(root, "c2/f.tmp"))
	c := startServer(t, Options{CopyFileRoot: root})
	ctx := context.Background()
	cases := map[string]string{
		"dotdot":           root + "/c1/../../outside/x",
		"absolute outside": outside + "/x",
		"relative":         "c1/x",
		"root itself":      root,
		"prefix trick":     root + "-other/x",
		"symlinked parent": root + "/evil/x",
		"symlinked tmp":    root + "/c2/f",
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := c.Agent.CopyFile(ctx, &pb.CopyFileRequest{Path: p, FileSize: 1, FileMode: sIFREG | 0o644, Data: []byte("x")})
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Fatalf("wrote outside the root: %v", entries)
	}
	// A chunk that runs past the declared size is refused.
	_, err := c.Agent.CopyFile(ctx, &pb.CopyFileRequest{Path: root + "/c1/f", FileSize: 1, FileMode: sIFREG | 0o644, Data: []byte("xy")})
	wantCode(t, err, codes.InvalidArgument)
}

func TestSetTimeReseedVolumeStats(t *testing.T) {
	var gotSec, gotUsec int64
	var seed []byte
	c := startServer(t, Options{
		System:  fakeSystem{setTime: func(s, u int64) error { gotSec, gotUsec = s, u; return nil }, reseed: func(d []byte) error { seed = d; return nil }},
		Storage: storage.New(storage.Config{Root: t.TempDir()}),
	})
	ctx := context.Background()
	if _, err := c.Agent.SetGuestDateTime(ctx, &pb.SetGuestDateTimeRequest{Sec: 1700000000, Usec: 42}); err != nil {
		t.Fatal(err)
	}
	if gotSec != 1700000000 || gotUsec != 42 {
		t.Fatalf("SetTime got %d %d", gotSec, gotUsec)
	}
	if _, err := c.Agent.ReseedRandomDev(ctx, &pb.ReseedRandomDevRequest{Data: []byte("entropy")}); err != nil || string(seed) != "entropy" {
		t.Fatalf("reseed %q %v", seed, err)
	}
	dir := t.TempDir()
	r, err := c.Agent.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Usage) != 2 || r.Usage[0].Unit != pb.VolumeUsage_BYTES || r.Usage[0].Total == 0 ||
		r.Usage[1].Unit != pb.VolumeUsage_INODES || r.Usage[0].Used > r.Usage[0].Total {
		t.Fatalf("stats %v", r)
	}
	_, err = c.Agent.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: dir + "/missing"})
	wantCode(t, err, codes.NotFound)
	_, err = c.Agent.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: "rel"})
	wantCode(t, err, codes.InvalidArgument)
}

// Without a storage manager or a system, their calls are Unimplemented,
// naming the method.
func TestStorageAndSystemUnimplementedWithout(t *testing.T) {
	c := startServer(t, Options{})
	ctx := context.Background()
	_, err := c.Agent.UpdateEphemeralMounts(ctx, &pb.UpdateEphemeralMountsRequest{})
	wantStatus(t, err, codes.Unimplemented, "UpdateEphemeralMounts")
	_, err = c.Agent.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: "/"})
	wantStatus(t, err, codes.Unimplemented, "GetVolumeStats")
	_, err = c.Agent.SetGuestDateTime(ctx, &pb.SetGuestDateTimeRequest{Sec: 1})
	wantStatus(t, err, codes.Unimplemented, "SetGuestDateTime")
	_, err = c.Agent.ReseedRandomDev(ctx, &pb.ReseedRandomDevRequest{Data: []byte("x")})
	wantStatus(t, err, codes.Unimplemented, "ReseedRandomDev")
}

type fakeSystem struct {
	setTime func(sec, usec int64) error
	reseed  func(data []byte) error
}

func (f fakeSystem) SetTime(sec, usec int64) error  { return f.setTime(sec, usec) }
func (f fakeSystem) ReseedRandom(data []byte) error { return f.reseed(data) }
