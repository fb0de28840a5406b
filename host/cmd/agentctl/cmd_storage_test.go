package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// TestCopyFileTree checks the requests copy-file sends for a tree: a
// directory and a symlink in one request each, a regular file in 1 MiB
// chunks with its mode, an empty file in one empty request.
func TestCopyFileTree(t *testing.T) {
	f := &fakeAgent{}
	addr := serveFake(t, f, map[string]ttrpc.Method{
		"CopyFile": method(f, func(r *pb.CopyFileRequest) (any, error) {
			if !strings.HasPrefix(r.Path, "/run/kata-containers/shared/containers/") {
				return nil, errors.New("path escapes the shared directory: invalid argument")
			}
			return &emptypb.Empty{}, nil
		}),
	})
	src := t.TempDir()
	big := bytes.Repeat([]byte("z"), 2*copyChunk+17) // three chunks
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub/big"), big, 0o600)
	os.Chmod(filepath.Join(src, "sub/big"), 0o600)
	os.WriteFile(filepath.Join(src, "empty"), nil, 0o644)
	os.Symlink("sub/big", filepath.Join(src, "link"))
	var stdout, stderr bytes.Buffer
	dst := "/run/kata-containers/shared/containers/cid/vol"
	if rc := agentctl([]string{"--addr", addr, "copy-file", src, dst}, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc=%d stderr=%s", rc, stderr.String())
	}
	byPath := map[string][]*pb.CopyFileRequest{}
	for _, r := range f.requests() {
		cr := r.(*pb.CopyFileRequest)
		byPath[cr.Path] = append(byPath[cr.Path], cr)
	}
	if len(byPath) != 5 {
		t.Fatalf("requests for %d paths, want 5 (root, sub, sub/big, empty, link): %v", len(byPath), byPath)
	}
	for _, dir := range []string{dst, dst + "/sub"} {
		if rs := byPath[dir]; len(rs) != 1 || rs[0].FileMode&syscall.S_IFMT != syscall.S_IFDIR {
			t.Errorf("%s: %v, want one directory request", dir, rs)
		}
	}
	var got []byte
	for i, r := range byPath[dst+"/sub/big"] {
		if r.Offset != int64(len(got)) || r.FileSize != int64(len(big)) || r.FileMode != syscall.S_IFREG|0o600 {
			t.Fatalf("chunk %d: offset %d size %d mode %o", i, r.Offset, r.FileSize, r.FileMode)
		}
		got = append(got, r.Data...)
	}
	if len(byPath[dst+"/sub/big"]) != 3 || !bytes.Equal(got, big) {
		t.Errorf("big file: %d chunks, %d bytes", len(byPath[dst+"/sub/big"]), len(got))
	}
	if rs := byPath[dst+"/empty"]; len(rs) != 1 || rs[0].FileSize != 0 || len(rs[0].Data) != 0 {
		t.Errorf("empty file: %v", rs)
	}
	if rs := byPath[dst+"/link"]; len(rs) != 1 || rs[0].FileMode&syscall.S_IFMT != syscall.S_IFLNK || string(rs[0].Data) != "sub/big" {
		t.Errorf("link: %v", rs)
	}
	// The agent's refusal reaches the user.
	stderr.Reset()
	if rc := agentctl([]string{"--addr", addr, "copy-file", filepath.Join(src, "empty"), "/run/kata-containers/shared/containers/../x"}, &stdout, &stderr); rc == 0 {
		t.Fatal("refused copy exited 0")
	}
	if !strings.Contains(stderr.String(), "escapes the shared directory") {
		t.Fatalf("stderr %q", stderr.String())
	}
}

func TestVolumeStatsAndUsage(t *testing.T) {
	f := &fakeAgent{}
	addr := serveFake(t, f, map[string]ttrpc.Method{
		"GetVolumeStats": method(f, func(r *pb.VolumeStatsRequest) (any, error) {
			return &pb.VolumeStatsResponse{Usage: []*pb.VolumeUsage{
				{Unit: pb.VolumeUsage_BYTES, Total: 4096, Used: 1024, Available: 3072},
				{Unit: pb.VolumeUsage_INODES, Total: 10, Used: 3, Available: 7},
			}}, nil
		}),
	})
	var stdout, stderr bytes.Buffer
	if rc := agentctl([]string{"--addr", addr, "volume-stats", "/run/kata-containers/vol"}, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc=%d %s", rc, stderr.String())
	}
	if want := "BYTES  total 4 KiB used 1 KiB available 3 KiB\nINODES total 10 used 3 available 7\n"; stdout.String() != want {
		t.Fatalf("output %q, want %q", stdout.String(), want)
	}
	if rs := f.requests(); len(rs) != 1 || rs[0].(*pb.VolumeStatsRequest).VolumeGuestPath != "/run/kata-containers/vol" {
		t.Fatalf("requests %v", rs)
	}
	for _, bad := range [][]string{{"set-time", "x"}, {"reseed", "0"}, {"copy-file", "a"}} {
		if rc := agentctl(append([]string{"--addr", addr}, bad...), &stdout, &stderr); rc == 0 {
			t.Fatalf("%v accepted", bad)
		}
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("usage errors sent %d requests", n-1)
	}
}
