//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// streamListenerPort is the guest's agent.passfd_listener_port (set on
// the shared guest's command line in e2e_test.go).
const streamListenerPort = 1027

func init() {
	registerSharedGuestTest("StreamPorts", (*suite).testStreamPorts)
}

// seqOutput is what `seq 1 n` prints.
func seqOutput(n int) []byte {
	var b bytes.Buffer
	for i := 1; i <= n; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// A container whose stdio is three stream-port connections: what the
// host writes reaches its stdin, and its stdout (a few MiB) and stderr
// arrive intact on their own connections, ending in EOF.
func (s *suite) testStreamPorts(t *testing.T) {
	const cid = "streamports"
	const lines = 600000 // ~4.5 MiB
	ctx := s.rpcCtx(t)
	ports, err := agentclient.DialStreams(ctx, s.vm.AgentAddress(agentPort), streamListenerPort, true, true, true)
	if err != nil {
		t.Fatalf("dial stream ports: %v", err)
	}
	defer ports.Close()
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, cid), s.bb); err != nil {
		t.Fatal(err)
	}
	_, err = s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid, ExecId: cid,
		OCI:       fixture.Spec(sandboxID, cid, []string{"sh", "-c", `read line; echo "got:$line" >&2; seq 1 ` + strconv.Itoa(lines)}),
		StdinPort: ports.StdinPort, StdoutPort: ports.StdoutPort, StderrPort: ports.StderrPort,
	})
	check(t, "CreateContainer with stream ports", err)
	_, err = s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
	check(t, "StartContainer", err)
	if _, err := io.WriteString(ports.Stdin, "hello over a stream port\n"); err != nil {
		t.Fatalf("write stdin: %v", err)
	}
	_ = ports.CloseStdin()
	errc := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(ports.Stderr); errc <- b }()
	_ = ports.Stdout.SetReadDeadline(time.Now().Add(5 * time.Minute))
	start := time.Now()
	out, err := io.ReadAll(ports.Stdout)
	d := time.Since(start)
	if err != nil {
		t.Fatalf("read stdout: %v", err)
	}
	want := seqOutput(lines)
	if sha256.Sum256(out) != sha256.Sum256(want) {
		t.Fatalf("stdout: %d bytes, checksum differs from seq's %d bytes", len(out), len(want))
	}
	t.Logf("stdout over a stream port: %d bytes in %v (%.1f MB/s)", len(out), d.Round(time.Millisecond), float64(len(out))/d.Seconds()/1e6)
	if got := string(<-errc); got != "got:hello over a stream port\n" {
		t.Errorf("stderr = %q", got)
	}
	if st := s.wait(t, cid, cid); st != 0 {
		t.Errorf("exit status %d", st)
	}
	// The agent keeps no end of a stream-port stdout: ReadStdout is at EOF.
	r, err := s.cli.Agent.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: cid, ExecId: cid, Len: 32 << 10})
	if err == nil && len(r.Data) != 0 {
		t.Errorf("ReadStdout on a stream-port container returned %d bytes", len(r.Data))
	}
	s.remove(t, cid)

	// A port no connection came from is the host's mistake.
	_, err = s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid + "-bad", ExecId: cid + "-bad", OCI: fixture.Spec(sandboxID, cid+"-bad", []string{"true"}),
		StdoutPort: 4000000000,
	})
	if err == nil || !strings.Contains(err.Error(), "stream port") {
		t.Errorf("CreateContainer naming an unconnected port: %v, want an error naming the stream port", err)
	}
}

// streamPortRate is the bench's stream-port row: a container writes
// streamBytes to a stdout stream-port connection that the host reads to
// EOF, through the same hybrid vsock backend as the raw-vsock row. The
// writer is dd with 64 KiB blocks, as the raw-vsock floor writes large
// blocks: the socket is the process's own stdout, so the rate follows
// the process's write size (busybox head's small writes: ~14 MB/s under
// TCG, where each vsock write costs a few hundred microseconds).
func (s *suite) streamPortRate(tb testing.TB) float64 {
	ctx := s.benchCtx(tb)
	const cid = "bench-streamport"
	ports, err := agentclient.DialStreams(ctx, s.vm.AgentAddress(agentPort), streamListenerPort, false, true, false)
	if err != nil {
		tb.Fatalf("dial stream port: %v", err)
	}
	defer ports.Close()
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, cid), s.bb); err != nil {
		tb.Fatal(err)
	}
	_, err = s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid, ExecId: cid, StdoutPort: ports.StdoutPort,
		OCI: fixture.Spec(sandboxID, cid, streamWriter()),
	})
	check(tb, "CreateContainer", err)
	_, err = s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
	check(tb, "StartContainer", err)
	start := time.Now()
	n, err := io.Copy(io.Discard, ports.Stdout)
	d := time.Since(start)
	if err != nil || n != streamBytes {
		tb.Fatalf("stream port stdout: %d bytes, %v; want %d", n, err, streamBytes)
	}
	if st := s.wait(tb, cid, cid); st != 0 {
		tb.Fatalf("stream-port container exited %d", st)
	}
	s.remove(tb, cid)
	return float64(n) / d.Seconds() / 1e6
}
