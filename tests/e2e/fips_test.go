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
	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// nonFIPSCmdline is the image's command line without fips=1 (and without
// quiet, so the agent's refusal reaches the console log).
func nonFIPSCmdline(t *testing.T, img string) []string {
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

// A FIPS agent on a kernel booted without fips=1 must refuse to serve
// (fail closed) rather than run with crypto modes that disagree.
func TestFIPSMismatchFailsClosed(t *testing.T) {
	img := imageDir(t)
	vm := bootWithCmdline(t, img, nonFIPSCmdline(t, img))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := vm.Wait(ctx); err != nil {
		t.Fatalf("the guest kept running although its agent must refuse to serve: %v", err)
	}
	console := vm.ConsoleTail(64 << 10)
	if !strings.Contains(console, "refusing to serve") || !strings.Contains(console, "FIPS mode mismatch") {
		t.Fatalf("console lacks the agent's FIPS refusal:\n%s", console)
	}
}

// The image builder's --fips=false adds GODEBUG=fips140=off, which the
// kernel hands to the agent: kernel and agent then agree on "off".
func TestNonFIPSImageServes(t *testing.T) {
	img := imageDir(t)
	vm := bootWithCmdline(t, img, append(nonFIPSCmdline(t, img), "GODEBUG=fips140=off"))
	bctx, bcancel := vm.Bound(context.Background())
	defer bcancel()
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()
	cli, err := agentclient.Dial(ctx, vm.AgentAddress(agentPort))
	if err != nil {
		t.Fatalf("agent not reachable: %v", err)
	}
	defer cli.Close()
	d, err := cli.Agent.GetGuestDetails(ctx, &pb.GuestDetailsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(d.GetAgentDetails().GetExtraFeatures(), "fips") {
		t.Errorf("non-FIPS guest reports FIPS: %v", d.GetAgentDetails().GetExtraFeatures())
	}
	if !strings.Contains(vm.ConsoleTail(64<<10), `"fips":"disabled"`) {
		t.Errorf("agent start-up log does not report FIPS disabled")
	}
	if _, err := vm.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
