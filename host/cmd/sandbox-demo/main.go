// Command sandbox-demo boots the guest image in QEMU, creates a sandbox
// and a container that prints a greeting, prints how long each step took
// (QEMU start to agent ready, container create+start), and shuts the VM
// down through DestroySandbox.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

func main() {
	image := flag.String("image", "build/guest", "image directory (vmlinuz, initrd.img, cmdline)")
	kvm := flag.Bool("kvm", false, "use KVM instead of TCG")
	appendArgs := flag.String("append", "", "extra kernel command line arguments")
	busybox := flag.String("busybox", fixture.DefaultBusybox, "static busybox for the container rootfs")
	greeting := flag.String("greeting", "Hello from a sandboxed container!", "what the container prints")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	verbose := flag.Bool("v", false, "log VM lifecycle steps")
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if err := run(ctx, log, *image, *kvm, *appendArgs, *busybox, *greeting); err != nil {
		fmt.Fprintln(os.Stderr, "sandbox-demo:", err)
		os.Exit(1)
	}
}

// The demo's sandbox and container ids.
const sid, cid = "demo", "greeter"

// timings are the figures the demo reports.
type timings struct {
	ready       time.Duration // QEMU start to agent healthy
	created     time.Duration // CreateContainer
	createStart time.Duration // CreateContainer + StartContainer
	exited      time.Duration // CreateContainer to the container's exit
	status      int32         // the container's exit status
	down        time.Duration // DestroySandbox to QEMU's exit
	qemuStatus  int
}

func run(ctx context.Context, log *slog.Logger, image string, kvm bool, appendArgs, busybox, greeting string) (err error) {
	if err := fixture.CheckStatic(busybox); err != nil {
		return err
	}
	share, err := os.MkdirTemp("", "sandbox-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(share)
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(share, cid), busybox); err != nil {
		return err
	}

	opts := []vmm.Option{vmm.WithImageDir(image), vmm.WithSharedDir(share, fixture.SharedTag), vmm.WithKVM(kvm), vmm.WithLogger(log)}
	if appendArgs != "" {
		opts = append(opts, vmm.WithAppend(appendArgs))
	}
	vm, err := vmm.Start(ctx, opts...)
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	defer func() {
		cerr := vm.Close()
		if err != nil {
			err = fmt.Errorf("%w\n--- guest console (tail) ---\n%s", err, vm.ConsoleTail(8<<10))
		} else if cerr != nil {
			err = cerr
		}
	}()
	if vm.VsockSocket() == "" {
		return errors.New("no vsock backend is wired into host/vmm")
	}

	// Every wait below ends as soon as QEMU does.
	ctx, cancel := vm.Bound(ctx)
	defer cancel()
	cli, err := agentclient.Dial(ctx, vm.AgentAddress(1024))
	if err != nil {
		return fmt.Errorf("reach agent (%v): %w", context.Cause(ctx), err)
	}
	defer cli.Close()
	if err := waitHealthy(ctx, cli); err != nil {
		return err
	}
	var t timings
	t.ready = time.Since(vm.Started())

	if _, err := cli.Agent.CreateSandbox(ctx, &pb.CreateSandboxRequest{
		Hostname: sid, SandboxId: sid, Storages: fixture.SandboxStorages(),
	}); err != nil {
		return fmt.Errorf("CreateSandbox: %w", err)
	}
	if err := runGreeter(ctx, cli, greeting, &t); err != nil {
		return err
	}
	if err := shutdown(ctx, cli, vm, &t); err != nil {
		return err
	}
	t.print()
	if t.qemuStatus != 0 {
		return fmt.Errorf("QEMU exited with status %d", t.qemuStatus)
	}
	return nil
}

// waitHealthy polls the agent's health service until it serves.
func waitHealthy(ctx context.Context, cli *agentclient.Client) error {
	for {
		r, err := cli.Health.Check(ctx, &pb.CheckRequest{})
		if err == nil && r.Status == pb.HealthCheckResponse_SERVING {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("agent never became healthy (%v): %v", context.Cause(ctx), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runGreeter creates and starts the container, prints what it says, waits
// for it and removes it, timing each step into t.
func runGreeter(ctx context.Context, cli *agentclient.Client, greeting string, t *timings) error {
	start := time.Now()
	if _, err := cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid, ExecId: cid,
		OCI: fixture.Spec(sid, cid, []string{"echo", greeting}),
	}); err != nil {
		return fmt.Errorf("CreateContainer: %w", err)
	}
	t.created = time.Since(start)
	if _, err := cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid}); err != nil {
		return fmt.Errorf("StartContainer: %w", err)
	}
	t.createStart = time.Since(start)

	out, err := readStdout(ctx, cli)
	if err != nil {
		return err
	}
	w, err := cli.Agent.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: cid})
	if err != nil {
		return fmt.Errorf("WaitProcess: %w", err)
	}
	t.exited, t.status = time.Since(start), w.Status
	fmt.Printf("container says: %s", out)
	if _, err := cli.Agent.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: cid}); err != nil {
		return fmt.Errorf("RemoveContainer: %w", err)
	}
	return nil
}

// readStdout reads the container's stdout until it ends.
func readStdout(ctx context.Context, cli *agentclient.Client) (string, error) {
	var out bytes.Buffer
	for {
		r, err := cli.Agent.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: cid, ExecId: cid, Len: 4096})
		if err != nil {
			return "", fmt.Errorf("ReadStdout: %w", err)
		}
		if len(r.Data) == 0 {
			return out.String(), nil
		}
		out.Write(r.Data)
	}
}

// shutdown destroys the sandbox and waits for QEMU to exit, as the agent
// powers off after answering.
func shutdown(ctx context.Context, cli *agentclient.Client, vm *vmm.VM, t *timings) error {
	down := time.Now()
	// The agent answers before it powers off.
	if _, err := cli.Agent.DestroySandbox(ctx, &pb.DestroySandboxRequest{}); err != nil {
		return fmt.Errorf("DestroySandbox: %w", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	code, err := vm.Wait(wctx)
	if err != nil {
		return fmt.Errorf("VM did not power off after DestroySandbox: %w", err)
	}
	t.down, t.qemuStatus = time.Since(down), code
	return nil
}

func (t *timings) print() {
	fmt.Printf("QEMU start to agent ready:   %v\n", t.ready.Round(time.Millisecond))
	fmt.Printf("container create:            %v\n", t.created.Round(time.Millisecond))
	fmt.Printf("container create+start:      %v\n", t.createStart.Round(time.Millisecond))
	fmt.Printf("container create to exit:    %v (status %d)\n", t.exited.Round(time.Millisecond), t.status)
	fmt.Printf("DestroySandbox to QEMU exit: %v (QEMU status %d)\n", t.down.Round(time.Millisecond), t.qemuStatus)
}
