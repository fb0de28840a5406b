//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	"github.com/sandbox-guest/sandbox-guest/image-builder/initrd"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// BenchmarkReadStdoutProfile profiles the agent in the guest while it
// serves the ReadStdout row. BENCH_PROFILE_AGENT is an agent built with
// -tags cpuprofile (agent/cmd/kata-agent/cpuprofile.go); the CPU profile
// is written through the shared directory to BENCH_PROFILE_OUT (default
// readstdout-cpu.pprof in the working directory), to read with
// `go tool pprof -top <agent> <profile>`, and the live heap's profile
// after the transfers beside it (<profile>.heap). BENCH_PROFILE_CHECKS
// adds that many Check calls after the transfers, one at a time, to
// profile the generic ttrpc path too.
func BenchmarkReadStdoutProfile(b *testing.B) {
	agent := os.Getenv("BENCH_PROFILE_AGENT")
	if agent == "" {
		b.Skip("BENCH_PROFILE_AGENT unset (an agent built with -tags cpuprofile)")
	}
	out := os.Getenv("BENCH_PROFILE_OUT")
	if out == "" {
		out = "readstdout-cpu.pprof"
	}
	img := filepath.Join(b.TempDir(), "initrd-profile.img")
	if _, err := initrd.Build(initrd.Options{Agent: agent, RootfsDir: filepath.Join("..", "..", "rootfs"),
		Compression: initrd.None, AgentImage: true, Output: img}); err != nil {
		b.Fatalf("profiling initramfs: %v", err)
	}
	// The transfers run back to back so that the profile's samples are
	// mostly theirs: at the guest's 250 Hz tick, one 64 MiB transfer gives
	// a few hundred.
	rounds := envInt(b, "BENCH_PROFILE_ROUNDS", 3)
	const secs = "25"
	s := bootSuite(b, vmm.WithInitrd(img), vmm.WithAppend(
		"SANDBOX_GUEST_CPUPROFILE="+fixture.GuestSharedDir+"prof/cpu.pprof",
		"SANDBOX_GUEST_CPUPROFILE_SECONDS="+secs, "SANDBOX_GUEST_CPUPROFILE_HZ=250"))
	// The directory appears in the guest with the share's mount: the
	// profile starts at CreateSandbox.
	if err := os.MkdirAll(filepath.Join(s.share, "prof"), 0o755); err != nil {
		b.Fatal(err)
	}
	ctx := s.benchCtx(b)
	s.createSandbox(ctx, b, nil)
	for i := 0; i < rounds; i++ {
		rate, rtt := s.readStdoutRate(b)
		b.Logf("ReadStdout %.1f MB/s, Check %.2f ms", rate, float64(rtt)/1e6)
	}
	if checks := envInt(b, "BENCH_PROFILE_CHECKS", 0); checks > 0 {
		start := time.Now()
		for i := 0; i < checks; i++ {
			_, err := s.cli.Health.Check(ctx, &pb.CheckRequest{})
			check(b, "Check", err)
		}
		b.Logf("%d Check calls, %.2f ms each", checks, float64(time.Since(start))/float64(checks)/1e6)
	}
	prof := filepath.Join(s.share, "prof", "cpu.pprof")
	deadline := time.Now().Add(90 * time.Second)
	for {
		data, err := os.ReadFile(prof)
		if err == nil {
			if err := os.WriteFile(out, data, 0o644); err != nil {
				b.Fatal(err)
			}
			b.Logf("profile: %s", out)
			// The agent writes its live heap's profile before the CPU
			// profile appears.
			if heap, err := os.ReadFile(prof + ".heap"); err == nil {
				if err := os.WriteFile(out+".heap", heap, 0o644); err != nil {
					b.Fatal(err)
				}
				b.Logf("heap profile: %s.heap", out)
			}
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("no profile from the guest: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
