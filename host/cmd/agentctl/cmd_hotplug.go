package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

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
	_, err := c.Agent.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{Wait: true, NbCpus: uint32(*cpus), CpuOnly: *cpuOnly})
	return err
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
	_, err := c.Agent.MemHotplugByProbe(ctx, &pb.MemHotplugByProbeRequest{MemHotplugProbeAddr: addrs})
	return err
}

func runGuestDetails(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("takes no arguments")
	}
	r, err := c.Agent.GetGuestDetails(ctx, &pb.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true})
	if err != nil {
		return err
	}
	d := r.GetAgentDetails()
	fmt.Fprintf(out, "mem_block_size_bytes: %d (%#x)\n", r.GetMemBlockSizeBytes(), r.GetMemBlockSizeBytes())
	fmt.Fprintf(out, "support_mem_hotplug_probe: %t\n", r.GetSupportMemHotplugProbe())
	fmt.Fprintf(out, "version: %s\n", d.GetVersion())
	fmt.Fprintf(out, "init_daemon: %t\n", d.GetInitDaemon())
	fmt.Fprintf(out, "device_handlers: %s\n", strings.Join(d.GetDeviceHandlers(), ","))
	fmt.Fprintf(out, "storage_handlers: %s\n", strings.Join(d.GetStorageHandlers(), ","))
	fmt.Fprintf(out, "supports_seccomp: %t\n", d.GetSupportsSeccomp())
	fmt.Fprintf(out, "extra_features: %s\n", strings.Join(d.GetExtraFeatures(), ","))
	return nil
}

func runMetrics(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("takes no arguments")
	}
	r, err := c.Agent.GetMetrics(ctx, &pb.GetMetricsRequest{})
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, r.GetMetrics())
	return err
}
