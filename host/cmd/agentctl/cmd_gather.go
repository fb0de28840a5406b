package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/sandbox-guest/sandbox-guest/host/gather"
	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
)

func init() {
	register(&command{name: "gather", streaming: true, agentOptional: true, run: runGather,
		args:    "-o DIR [--vm-dir DIR] [--qemu-log F] [--virtiofsd-log F] [--console-log F] [--container ID]...",
		summary: "write one tar.gz of the sandbox's diagnostics (guest, containers, agent log, host logs) into DIR"})
}

// Host-kit log names in a VM's work directory (host/vmm).
var vmLogs = []string{"qemu.log", "virtiofsd.log", "console.log"}

func runGather(ctx context.Context, c *agentclient.Client, args []string) error {
	fs := newFlags("gather")
	dir := fs.String("o", "", "directory to write the archive into (created if missing)")
	vmDir := fs.String("vm-dir", "", "the VM's work directory (host/vmm): its qemu.log, virtiofsd.log and console.log")
	qemuLog := fs.String("qemu-log", "", "QEMU's log (overrides --vm-dir's)")
	virtiofsdLog := fs.String("virtiofsd-log", "", "virtiofsd's log (overrides --vm-dir's)")
	consoleLog := fs.String("console-log", "", "the serial console log (overrides --vm-dir's)")
	maxLog := fs.Int64("max-log-bytes", gather.DefaultMaxLogBytes, "keep at most this many last bytes of each host log")
	partTimeout := fs.Duration("part-timeout", gather.DefaultPartTimeout, "time allowed to each call to the agent")
	var containers stringList
	fs.Var(&containers, "container", "also collect this container id (repeatable; the agent's own list is always used)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *dir == "" {
		return errors.New("-o DIR is required")
	}
	if *maxLog <= 0 {
		return fmt.Errorf("--max-log-bytes %d: must be positive", *maxLog)
	}
	logs := map[string]string{}
	if *vmDir != "" {
		for _, name := range vmLogs {
			logs[name] = filepath.Join(*vmDir, name)
		}
	}
	for name, p := range map[string]string{"qemu.log": *qemuLog, "virtiofsd.log": *virtiofsdLog, "console.log": *consoleLog} {
		if p != "" {
			logs[name] = p
		}
	}
	opts := gather.Options{AgentErr: dialErr, Containers: containers, MaxLogBytes: *maxLog, PartTimeout: *partTimeout}
	if c != nil {
		opts.Agent = c.Agent
	}
	for _, name := range vmLogs {
		if p, ok := logs[name]; ok {
			opts.HostLogs = append(opts.HostLogs, gather.HostLog{Name: name, Path: p})
		}
	}
	start := time.Now()
	path, sum, err := gather.ToDir(ctx, *dir, opts)
	if err != nil {
		return err
	}
	took := time.Since(start)
	size := fileSize(path)
	res := map[string]any{"archive": path, "bytes": size, "duration_ns": took.Nanoseconds(),
		"members": sum.Members, "containers": sum.Containers, "errors": sum.Errors}
	return emit(res, func(w io.Writer) error {
		fmt.Fprintf(w, "wrote %s (%s, %d members, %d containers) in %s\n", path, humanBytes(size), len(sum.Members), len(sum.Containers), humanDuration(took))
		if n := len(sum.Errors); n > 0 {
			fmt.Fprintf(w, "%d parts failed (listed in errors.txt):\n", n)
			for _, e := range sum.Errors {
				fmt.Fprintf(w, "  %s\n", e)
			}
		}
		return nil
	})
}
