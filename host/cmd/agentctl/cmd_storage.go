package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

func init() {
	register(&command{name: "copy-file", args: "LOCAL GUEST_PATH", summary: "copy a file, symlink or directory tree into the guest's shared directory (1 MiB chunks, mode and owner kept)", run: runCopyFile})
	register(&command{name: "set-time", args: "[UNIX_SECONDS]", summary: "set the guest clock (default: this host's time)", run: runSetTime})
	register(&command{name: "reseed", args: "[BYTES]", summary: "feed the guest's entropy pool with random bytes from this host (default 512)", run: runReseed})
	register(&command{name: "volume-stats", args: "GUEST_PATH", summary: "print bytes and inodes of the filesystem at a guest path", run: runVolumeStats})
}

// copyChunk is the chunk size the Kata runtime uses; ttrpc messages are at
// most 4 MiB.
const copyChunk = 1 << 20

func runCopyFile(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want LOCAL GUEST_PATH")
	}
	local, guest := args[0], args[1]
	var st copyStats
	start := time.Now()
	err := filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(local, p)
		if err != nil {
			return err
		}
		return copyOne(ctx, c, p, filepath.Join(guest, rel), &st)
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	res := map[string]any{"guest_path": guest, "entries": st.entries, "bytes": st.bytes, "skipped": st.skipped, "duration_ns": took.Nanoseconds()}
	return emit(res, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "copied %d entries (%s) to %s in %s\n", st.entries, humanBytes(st.bytes), guest, humanDuration(took))
		return err
	})
}

// copyStats counts what copy-file sent.
type copyStats struct {
	entries, skipped int
	bytes            uint64 // file contents
}

// copyOne sends one entry the way the runtime does: directories and
// symlinks in one request (the link target as data), regular files in
// chunks with their mode and owner.
func copyOne(ctx context.Context, c *agentclient.Client, local, guest string, cs *copyStats) error {
	fi, err := os.Lstat(local)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no stat information", local)
	}
	req := &pb.CopyFileRequest{
		Path: guest, FileMode: st.Mode, DirMode: 0o755,
		Uid: int32(st.Uid), Gid: int32(st.Gid), FileSize: fi.Size(),
	}
	switch {
	case fi.IsDir():
		req.FileSize = 0
		_, err := c.Agent.CopyFile(ctx, req)
		cs.entries++
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(local)
		if err != nil {
			return err
		}
		req.Data = []byte(target)
		_, err = c.Agent.CopyFile(ctx, req)
		cs.entries++
		return err
	case !fi.Mode().IsRegular():
		// On stderr: stdout carries the result (JSON with --json).
		fmt.Fprintf(errOut, "skipping %s: not a regular file, directory or symlink\n", local)
		cs.skipped++
		return nil
	}
	cs.entries++
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, copyChunk)
	for off := int64(0); ; {
		n, rerr := io.ReadFull(f, buf)
		if n > 0 || off == 0 {
			req.Offset, req.Data = off, buf[:n]
			if _, err := c.Agent.CopyFile(ctx, req); err != nil {
				return fmt.Errorf("%s at offset %d: %w", guest, off, err)
			}
			off += int64(n)
			cs.bytes += uint64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func runSetTime(ctx context.Context, c *agentclient.Client, args []string) error {
	now := time.Now()
	sec, usec := now.Unix(), int64(now.Nanosecond()/1000)
	switch len(args) {
	case 0:
	case 1:
		n, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("UNIX_SECONDS %q is not a non-negative integer", args[0])
		}
		sec, usec = n, 0
	default:
		return fmt.Errorf("want at most one argument")
	}
	if _, err := c.Agent.SetGuestDateTime(ctx, &pb.SetGuestDateTimeRequest{Sec: sec, Usec: usec}); err != nil {
		return err
	}
	set := time.Unix(sec, usec*1000).UTC()
	return emit(map[string]any{"sec": sec, "usec": usec, "time": set.Format(time.RFC3339Nano)}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "guest clock set to %s\n", set.Format(time.RFC3339Nano))
		return err
	})
}

func runReseed(ctx context.Context, c *agentclient.Client, args []string) error {
	n := 512
	if len(args) > 1 {
		return fmt.Errorf("want at most one argument")
	}
	if len(args) == 1 {
		v, err := strconv.Atoi(args[0])
		if err != nil || v <= 0 || v > 64<<10 {
			return fmt.Errorf("BYTES %q must be 1..65536", args[0])
		}
		n = v
	}
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		return err
	}
	if _, err := c.Agent.ReseedRandomDev(ctx, &pb.ReseedRandomDevRequest{Data: data}); err != nil {
		return err
	}
	return emit(map[string]any{"bytes": n}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "fed %s to the guest's entropy pool\n", humanBytes(uint64(n)))
		return err
	})
}

func runVolumeStats(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want GUEST_PATH")
	}
	r, err := c.Agent.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: args[0]})
	if err != nil {
		return err
	}
	return emit(r, func(w io.Writer) error {
		for _, u := range r.GetUsage() {
			amount := func(n uint64) string { return strconv.FormatUint(n, 10) }
			if u.GetUnit() == pb.VolumeUsage_BYTES {
				amount = humanBytes
			}
			if _, err := fmt.Fprintf(w, "%-6s total %s used %s available %s\n", u.GetUnit().String(), amount(u.GetTotal()), amount(u.GetUsed()), amount(u.GetAvailable())); err != nil {
				return err
			}
		}
		return nil
	})
}
