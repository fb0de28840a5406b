//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
)

// initrdVariant is one initramfs of BENCH_INITRDS: a label and a path
// ("" for the image's own).
type initrdVariant struct{ label, path string }

// initrdVariants reads BENCH_INITRDS, "label=path,label=path"; without it
// the image's own, labelled "image".
func initrdVariants() []initrdVariant {
	spec := os.Getenv("BENCH_INITRDS")
	if spec == "" {
		spec = "image="
	}
	var vs []initrdVariant
	for _, f := range strings.Split(spec, ",") {
		label, path, _ := strings.Cut(f, "=")
		vs = append(vs, initrdVariant{label, path})
	}
	return vs
}

// BenchmarkBootAB compares the boot row for several initramfs images in
// one run: BENCH_INITRDS="label=path,label=path" (an empty path is the
// image's own), each booted BENCH_BOOTS times, in turn with the floor, so
// that the machine's drifting load hits all alike. It is how a start-up
// change (or the initramfs compression) is measured before and after.
func BenchmarkBootAB(b *testing.B) {
	boots := envInt(b, "BENCH_BOOTS", 3)
	type variant struct {
		initrdVariant
		boots []time.Duration
		steps []string
	}
	var vs []*variant
	for _, v := range initrdVariants() {
		vs = append(vs, &variant{initrdVariant: v})
	}
	floorInitrd := buildFloor(b)
	var floor []time.Duration
	for i := 0; i < boots; i++ {
		vm, fb := floorBoot(b, floorInitrd)
		vm.Close()
		floor = append(floor, fb)
		for _, v := range vs {
			d, steps := agentBootRunWith(b, v.path)
			v.boots, v.steps = append(v.boots, d), append(v.steps, steps)
			b.Logf("boot %d %s: %v (floor %v) %s", i+1, v.label, d.Round(time.Millisecond), fb.Round(time.Millisecond), steps)
		}
	}
	fm := median(floor)
	fmt.Printf("\n%-24s %12s %8s\n", "initramfs", "boot median", "ratio")
	fmt.Printf("%-24s %12s %8s\n", "floor", ms(fm), "-")
	for _, v := range vs {
		m := median(v.boots)
		fmt.Printf("%-24s %12s %7.2fx\n", v.label, ms(m), float64(m)/float64(fm))
		b.ReportMetric(float64(m)/float64(fm), v.label+"-ratio")
	}
}

// BenchmarkReadStdoutAB compares the ReadStdout row for several initramfs
// images (BENCH_INITRDS as for BenchmarkBootAB), BENCH_ROUNDS rounds
// (default 2) of one boot each in turn, so that a change to the stdio
// path is measured before and after under the same drifting load.
func BenchmarkReadStdoutAB(b *testing.B) {
	rounds := envInt(b, "BENCH_ROUNDS", 2)
	type variant struct {
		initrdVariant
		rates []float64
	}
	var vs []*variant
	for _, v := range initrdVariants() {
		vs = append(vs, &variant{initrdVariant: v})
	}
	floorInitrd := buildFloor(b)
	var floorReplies []float64
	for i := 0; i < rounds; i++ {
		f := floorRun(b, floorInitrd)
		floorReplies = append(floorReplies, f.pipeMBps)
		b.Logf("round %d floor: 32 KiB replies %.1f MB/s, from a pipe %.1f MB/s, round trip %.2f ms, stream %.0f MB/s", i+1, f.replyMBps, f.pipeMBps, float64(f.rtt)/1e6, f.mbps)
		for _, v := range vs {
			var opts []vmm.Option
			if v.path != "" {
				opts = append(opts, vmm.WithInitrd(v.path))
			}
			rate, rtt := stdoutInNewGuest(b, opts...)
			v.rates = append(v.rates, rate)
			b.Logf("round %d %s: ReadStdout %.1f MB/s, Check %.2f ms", i+1, v.label, rate, float64(rtt)/1e6)
		}
	}
	fm := medianF(floorReplies)
	fmt.Printf("\n%-24s %16s %8s\n", "initramfs", "ReadStdout median", "of floor")
	fmt.Printf("%-24s %11.1f MB/s %8s\n", "floor (pipe replies)", fm, "-")
	for _, v := range vs {
		m := medianF(v.rates)
		fmt.Printf("%-24s %11.1f MB/s %7.2fx\n", v.label, m, m/fm)
		b.ReportMetric(m, v.label+"-MB/s")
	}
}
