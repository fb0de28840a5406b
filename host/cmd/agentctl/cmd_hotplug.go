package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

func init() {
	register(&command{name: "online-mem", args: "[--cpus N] [--cpu-only]", summary: "online hot-plugged CPUs and memory (OnlineCPUMem)", run: runOnlineMem})
	register(&command{name: "mem-probe", args: "ADDR...", summary: "add memory at physical addresses through the probe interface", run: runMemProbe})
	register(&command{name: "guest-details", summary: "print memory hot-plug facts and agent details", run: runGuestDetails})
	register(&command{name: "metrics", summary: "print the agent's Prometheus metrics", run: runMetrics})
}

func runOnlineMem(ctx context.Context, c *agentclient.Client, args []string) error {
	fs := flag.NewFlagSet("online-mem", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cpus := fs.Uint("cpus", 0, "total number of vCPUs that should be online (0: no CPU change)")
	cpuOnly := fs.Bool("cpu-only", false, "online CPUs only, not memory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if uint64(*cpus) > 1<<32-1 {
		return fmt.Errorf("--cpus %d: too large", *cpus)
	}
	start := time.Now()
	if _, err := c.Agent.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{Wait: true, NbCpus: uint32(*cpus), CpuOnly: *cpuOnly}); err != nil {
		return err
	}
	took := time.Since(start)
	return emit(map[string]any{"cpus": *cpus, "cpu_only": *cpuOnly, "duration_ns": took.Nanoseconds()}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "onlined in %s\n", humanDuration(took))
		return err
	})
}

func runMemProbe(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("needs at least one physical address (for example 0x100000000)")
	}
	addrs := make([]uint64, 0, len(args))
	for _, a := range args {
		v, err := strconv.ParseUint(a, 0, 64)
		if err != nil {
			return fmt.Errorf("address %q: not a number (decimal, or hex with 0x)", a)
		}
		addrs = append(addrs, v)
	}
	if _, err := c.Agent.MemHotplugByProbe(ctx, &pb.MemHotplugByProbeRequest{MemHotplugProbeAddr: addrs}); err != nil {
		return err
	}
	return emit(map[string]any{"probed_addresses": addrs}, nil)
}

func runGuestDetails(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("takes no arguments")
	}
	r, err := c.Agent.GetGuestDetails(ctx, &pb.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true})
	if err != nil {
		return err
	}
	return emit(r, func(w io.Writer) error {
		d := r.GetAgentDetails()
		fmt.Fprintf(w, "mem_block_size: %s (%#x)\n", humanBytes(r.GetMemBlockSizeBytes()), r.GetMemBlockSizeBytes())
		fmt.Fprintf(w, "support_mem_hotplug_probe: %t\n", r.GetSupportMemHotplugProbe())
		fmt.Fprintf(w, "version: %s\n", d.GetVersion())
		fmt.Fprintf(w, "init_daemon: %t\n", d.GetInitDaemon())
		fmt.Fprintf(w, "device_handlers: %s\n", strings.Join(d.GetDeviceHandlers(), ","))
		fmt.Fprintf(w, "storage_handlers: %s\n", strings.Join(d.GetStorageHandlers(), ","))
		fmt.Fprintf(w, "supports_seccomp: %t\n", d.GetSupportsSeccomp())
		_, err := fmt.Fprintf(w, "extra_features: %s\n", strings.Join(d.GetExtraFeatures(), ","))
		return err
	})
}

func runMetrics(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("takes no arguments")
	}
	r, err := c.Agent.GetMetrics(ctx, &pb.GetMetricsRequest{})
	if err != nil {
		return err
	}
	// People and scrapers read the exposition text as it is; scripts get
	// the samples.
	return emit(parseMetrics(r.GetMetrics()), func(w io.Writer) error {
		_, err := io.WriteString(w, r.GetMetrics())
		return err
	})
}

// metricSample is one sample of the Prometheus text, for --json. Value is
// a number, or a string for +Inf, -Inf and NaN (which JSON cannot carry).
type metricSample struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  any               `json:"value"`
}

// parseMetrics reads the samples of Prometheus exposition text (the
// agent's: no timestamps, no escaped quotes in label values).
func parseMetrics(text string) []metricSample {
	samples := []metricSample{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sep := strings.LastIndexByte(line, ' ')
		if sep < 0 {
			continue
		}
		head, val := line[:sep], line[sep+1:]
		s := metricSample{Name: head}
		if i := strings.IndexByte(head, '{'); i >= 0 && strings.HasSuffix(head, "}") {
			s.Name = head[:i]
			s.Labels = map[string]string{}
			for _, kv := range strings.Split(head[i+1:len(head)-1], ",") {
				k, v, ok := strings.Cut(kv, "=")
				if ok {
					s.Labels[k] = strings.Trim(v, `"`)
				}
			}
		}
		if f, err := strconv.ParseFloat(val, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			s.Value = f
		} else {
			s.Value = val
		}
		samples = append(samples, s)
	}
	return samples
}
