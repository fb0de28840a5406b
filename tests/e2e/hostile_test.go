//go:build e2e

package e2e

import (
	"context"
	"net"
	"testing"

	"github.com/sandbox-guest/sandbox-guest/protocols/guestpath"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// HostileInput sends the hostile-input table (tests/e2e/fixture) to the
// guest's agent: for every AgentService method that takes input, the
// malformed and adversarial requests a compromised or buggy host could
// send, raw ttrpc frames, and floods. Each must be answered with the
// expected code and a message naming the problem; the agent must answer
// Health.Check after each group and end with its goroutines and open
// descriptors where they started (within fixture.Hostile*Slack).
func init() {
	registerSharedGuestTest("HostileInput", func(s *suite, t *testing.T) {
		fixture.RunHostile(t, &fixture.HostileTarget{
			Agent:  s.cli.Agent,
			Health: s.cli.Health,
			Dial: func(ctx context.Context) (net.Conn, error) {
				return s.vm.DialVsock(ctx, agentPort)
			},
			Container: s.sleeperContainer(t),
			SharedDir: guestpath.SharedDir,
			KataRoot:  guestpath.KataRoot,
			Guest:     true,
		})
	})
}
