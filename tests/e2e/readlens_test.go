//go:build e2e

package e2e

import (
	"strconv"
	"testing"
	"time"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// BenchmarkReadStdoutLens separates the per-call from the per-byte cost
// of ReadStdout: 16 MiB from `dd bs=64k` read at several lengths.
func BenchmarkReadStdoutLens(b *testing.B) {
	s := bootSuite(b)
	ctx := s.benchCtx(b)
	s.createSandbox(ctx, b, nil)
	const total = 16 << 20
	for i, l := range []int{4 << 10, 32 << 10, 256 << 10, 1 << 20} {
		cid := "lens" + strconv.Itoa(i)
		s.createContainer(b, cid, []string{"dd", "if=/dev/zero", "bs=65536", "count=" + strconv.Itoa(total/65536)})
		start := time.Now()
		n, calls := 0, 0
		for {
			r, err := s.cli.Agent.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: cid, ExecId: cid, Len: uint32(l)})
			check(b, "ReadStdout", err)
			if len(r.Data) == 0 {
				break
			}
			n += len(r.Data)
			calls++
		}
		d := time.Since(start)
		b.Logf("len %7d: %d bytes in %d calls, %.1f MB/s, %.2f ms/call, %.0f bytes/call", l, n, calls, float64(n)/d.Seconds()/1e6, float64(d)/1e6/float64(calls), float64(n)/float64(calls))
		s.wait(b, cid, cid)
		s.remove(b, cid)
	}
}
