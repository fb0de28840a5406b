//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// FIPS mode is a property of the node: one image, the host adds fips=1 on
// FIPS nodes, and the agent follows the kernel by itself.

// testFIPS runs on the shared guest (TestE2E) and checks the mode that
// guest was booted in: the image's default command line is non-FIPS, and
// E2E_APPEND=fips=1 runs the whole suite as a FIPS node.
func (s *suite) testFIPS(t *testing.T) {
	cid := s.sleeperContainer(t)
	cmdline, st := s.exec(t, cid, false, "cat", "/proc/cmdline")
	if st != 0 {
		t.Fatalf("cat /proc/cmdline: status %d", st)
	}
	want := slices.Contains(strings.Fields(cmdline), "fips=1")
	s.checkFIPS(t, cid, want)
}

// checkFIPS asserts what a container and GetGuestDetails see in a guest
// that is (want) or is not a FIPS guest.
func (s *suite) checkFIPS(t *testing.T, cid string, want bool) {
	t.Helper()
	wantFile := "0"
	if want {
		wantFile = "1"
	}
	out, st := s.exec(t, cid, false, "cat", "/proc/sys/crypto/fips_enabled")
	if st != 0 || strings.TrimSpace(out) != wantFile {
		t.Errorf("container sees fips_enabled = %q (status %d), want %s", out, st, wantFile)
	}
	r, err := s.cli.Agent.GetGuestDetails(s.rpcCtx(t), &pb.GuestDetailsRequest{})
	check(t, "GetGuestDetails", err)
	if got := slices.Contains(r.GetAgentDetails().GetExtraFeatures(), "fips"); got != want {
		t.Errorf(`GetGuestDetails reports "fips" %v, want %v (extra_features %v)`, got, want, r.GetAgentDetails().GetExtraFeatures())
	}
	mode := `"fips":"disabled"`
	if want {
		mode = `"fips":"enabled"`
	}
	if !strings.Contains(s.vm.ConsoleTail(256<<10), mode) {
		t.Errorf("agent start-up log lacks %s", mode)
	}
}

// The same image booted as a non-FIPS node (its default command line) and
// as a FIPS node (fips=1 added, as the runtime does on FIPS clusters):
// the agent serves both, reports the kernel's mode, and containers see it.
func TestFIPSFollowsNode(t *testing.T) {
	for _, tc := range []struct {
		name string
		fips bool
	}{{"NonFIPSNode", false}, {"FIPSNode", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []vmm.Option
			if tc.fips {
				extra = append(extra, vmm.WithAppend("fips=1"))
			}
			s := bootSuite(t, extra...)
			s.testCreateSandbox(t)
			s.checkFIPS(t, s.sleeperContainer(t), tc.fips)
		})
	}
}

// imageCmdline is the image's default command line without quiet (so the
// agent's refusal reaches the console log) and without any FIPS choice.
func imageCmdline(t *testing.T, img string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(img, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(strings.Fields(string(b)), func(f string) bool {
		return f == "fips=1" || f == "quiet" || strings.HasPrefix(f, "GODEBUG=")
	})
}

func bootWithCmdline(t *testing.T, img string, cmdline []string) *vmm.VM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	vm, err := vmm.Start(ctx,
		vmm.WithKernel(filepath.Join(img, "vmlinuz")),
		vmm.WithInitrd(filepath.Join(img, "initrd.img")),
		vmm.WithCmdline(strings.Join(cmdline, " ")),
	)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest console (tail):\n%s", vm.ConsoleTail(4096))
		}
		vm.Close()
	})
	return vm
}

// The agent follows the kernel unless the command line fixes Go's FIPS
// mode explicitly (GODEBUG=fips140=..., which the kernel hands to PID 1).
// An explicit mode that disagrees with the kernel is an inconsistent state:
// the agent refuses to serve (fail closed) rather than run with crypto
// modes that disagree.
func TestFIPSMismatchFailsClosed(t *testing.T) {
	img := imageDir(t)
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"FIPSKernelAgentOff", []string{"fips=1", "GODEBUG=fips140=off"}},
		{"AgentOnWithoutFIPSKernel", []string{"GODEBUG=fips140=on"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm := bootWithCmdline(t, img, append(imageCmdline(t, img), tc.extra...))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if _, err := vm.Wait(ctx); err != nil {
				t.Fatalf("the guest kept running although its agent must refuse to serve: %v", err)
			}
			console := vm.ConsoleTail(64 << 10)
			if !strings.Contains(console, "refusing to serve") || !strings.Contains(console, "FIPS mode mismatch") {
				t.Fatalf("console lacks the agent's FIPS refusal:\n%s", console)
			}
		})
	}
}
