//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

func init() {
	registerSharedGuestTest("FaultConnectionDropUnderOutput", (*suite).testFaultDropUnderOutput)
}

// dropReadLen is the read size of testFaultDropUnderOutput: the most a
// reply lost with its connection can carry.
const dropReadLen = 512

// testFaultDropUnderOutput: connections dropped again and again while
// output streams, each with a ReadStdout in flight. The protocol has no
// acknowledgement: a reply the agent sent as the host closed the
// connection is gone with it. Everything else must arrive, once and in
// order: each reply continues where the last one delivered stopped, but
// for gaps of at most one reply's length, one per read that failed with
// its connection (the agent may serve a dead connection's request after
// the next connection's first reads).
func (s *suite) testFaultDropUnderOutput(t *testing.T) {
	const cid = "dropstream"
	const lines = 20000
	var want strings.Builder
	for i := 0; i < lines; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	s.createContainer(t, cid, []string{"sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo $i; i=$((i+1)); done", lines)})
	defer s.remove(t, cid)
	expected := want.String()
	off, drops, lostReplies, lostBytes := 0, 0, 0, 0
	mayLose := 0 // failed in-flight reads whose reply may yet be lost
	deliver := func(chunk []byte) {
		t.Helper()
		i := strings.Index(expected[off:], string(chunk))
		switch {
		case i == 0:
		case i > 0 && (i+dropReadLen-1)/dropReadLen <= mayLose:
			lostBytes += i
			mayLose -= (i + dropReadLen - 1) / dropReadLen
		default:
			t.Fatalf("reply of %d bytes at offset %d does not continue the stream (found at +%d; replies that may be lost: %d)", len(chunk), off, i, mayLose)
		}
		off += i + len(chunk)
	}
	for eof := false; !eof; {
		c := s.dialAgent(t)
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		read := func() ([]byte, error) {
			r, err := c.Agent.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: cid, ExecId: cid, Len: dropReadLen})
			if err != nil {
				return nil, err
			}
			return r.Data, nil
		}
		for i := 0; i < 1+drops%3 && !eof; i++ {
			b, err := read()
			if err != nil {
				t.Fatalf("ReadStdout: %v", err)
			}
			if eof = len(b) == 0; !eof {
				deliver(b)
			}
		}
		if !eof {
			type result struct {
				b   []byte
				err error
			}
			rc := make(chan result, 1)
			go func() { b, err := read(); rc <- result{b, err} }()
			time.Sleep(time.Duration(drops%5) * time.Millisecond)
			c.Close()
			drops++
			switch r := <-rc; {
			case r.err != nil:
				lostReplies++
				mayLose++
			case len(r.b) == 0:
				eof = true
			default:
				deliver(r.b)
			}
		}
		cancel()
		c.Close()
	}
	t.Logf("%d connections dropped with a read in flight; %d of those reads failed, %d bytes lost with them (at most %d each); %d of %d bytes delivered",
		drops, lostReplies, lostBytes, dropReadLen, off-lostBytes, len(expected))
	if off != len(expected) && !(mayLose > 0 && len(expected)-off <= mayLose*dropReadLen) {
		t.Errorf("the stream ended at %d of %d bytes", off, len(expected))
	}
}
