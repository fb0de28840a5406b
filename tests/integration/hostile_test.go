package integration

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// TestHostileInput sends the hostile-input table (tests/e2e/fixture,
// shared with the QEMU suite) to the in-process agent. The guest-only
// cases (clock, network) are left to the QEMU suite: here they would
// reach the development host's clock and network namespace if a check
// were missing.
func TestHostileInput(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, time.Minute)
	if _, err := a.cli.CreateSandbox(ctx, &pb.CreateSandboxRequest{SandboxId: "pod"}); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	a.run("sleeper", a.spec(false, "sleep", "3600"))
	// The guest has its shared directory mounted; here it is made.
	if err := os.MkdirAll(a.roots.Shared, 0o755); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	hc := ttrpc.NewClient(conn)
	t.Cleanup(func() { _ = hc.Close() })
	fixture.RunHostile(t, &fixture.HostileTarget{
		Agent:  a.cli,
		Health: pb.NewHealthClient(hc),
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", a.sock)
		},
		Container: "sleeper",
		SharedDir: a.roots.Shared,
		KataRoot:  a.roots.Kata,
	})
}
