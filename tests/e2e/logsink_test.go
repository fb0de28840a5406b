//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

const logPort = 1025

// A host that attaches to the agent's log port (agent.log_vport) and stops
// reading must not block the agent: every call still answers promptly,
// lines are dropped and counted, and the count is logged once the host
// reads again.
func TestLogPortHostStopsReading(t *testing.T) {
	s := bootSuite(t, vmm.WithAppend("agent.log_vport=1025 agent.log=debug"))
	hv := strings.TrimPrefix(s.vm.AgentAddress(logPort), "hvsock://")
	hv = hv[:strings.LastIndex(hv, ":")]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logc net.Conn
	for {
		var err error
		if logc, err = agentclient.DialHybrid(ctx, hv, logPort); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("log port: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer logc.Close()
	time.Sleep(200 * time.Millisecond) // the agent attaches the connection

	// Each failing call logs a debug line of about 300 bytes; 6000 of them
	// are far more than the vsock window, the host socket buffers and the
	// agent's queue hold, so without dropping the agent would block.
	id := "nosuch-" + strings.Repeat("x", 50)
	const calls, workers = 6000, 8
	var next, slow atomic.Int64
	var maxLatency atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	// The first call that fails or hangs ends the run.
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil && next.Add(1) <= calls {
				cctx, ccancel := context.WithTimeout(runCtx, 10*time.Second)
				t0 := time.Now()
				_, err := s.cli.Agent.SignalProcess(cctx, &pb.SignalProcessRequest{ContainerId: id, Signal: 9})
				ccancel()
				d := time.Since(t0)
				for {
					m := maxLatency.Load()
					if int64(d) <= m || maxLatency.CompareAndSwap(m, int64(d)) {
						break
					}
				}
				if status.Code(err) != codes.NotFound && runCtx.Err() == nil {
					if slow.Add(1) == 1 {
						t.Errorf("call %d of SignalProcess with the log port not read: %v (after %s)", next.Load(), err, d.Round(time.Millisecond))
					}
					stop()
				}
			}
		}()
	}
	wg.Wait()
	if n := slow.Load(); n > 0 {
		t.Fatalf("calls failed or hung while the log port was not read")
	}
	t.Logf("%d calls logging at debug in %s with the host not reading the log port; slowest %s",
		calls, time.Since(start).Round(time.Millisecond), time.Duration(maxLatency.Load()).Round(time.Millisecond))

	// The host reads again: the agent says how many lines it dropped.
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(logc)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"dropped"`) {
				found <- sc.Text()
				return
			}
		}
	}()
	_, _ = s.cli.Agent.SignalProcess(s.rpcCtx(t), &pb.SignalProcessRequest{ContainerId: id, Signal: 9})
	select {
	case line := <-found:
		t.Logf("log port after recovery: %s", line)
	case <-time.After(60 * time.Second):
		t.Fatal("no line reporting dropped log lines after the host read the log port again")
	}
}
