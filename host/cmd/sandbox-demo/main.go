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

func run(ctx context.Context, log *slog.Logger, image string, kvm bool, appendArgs, busybox, greeting string) (err error) {
	if err := fixture.CheckStatic(busybox); err != nil {
		return err
	}
	share, err := os.MkdirTemp("", "sandbox-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(share)
	const sid, cid = "demo", "greeter"
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
	for {
		r, err := cli.Health.Check(ctx, &pb.CheckRequest{})
		if err == nil && r.Status == pb.HealthCheckResponse_SERVING {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("agent never became healthy (%v): %v", context.Cause(ctx), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ready := time.Since(vm.Started())

	if _, err := cli.Agent.CreateSandbox(ctx, &pb.CreateSandboxRequest{
		Hostname: sid, SandboxId: sid, Storages: fixture.SandboxStorages(),
	}); err != nil {
		return fmt.Errorf("CreateSandbox: %w", err)
	}

	start := time.Now()
	if _, err := cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid, ExecId: cid,
		OCI: fixture.Spec(sid, cid, []string{"echo", greeting}),
	}); err != nil {
		return fmt.Errorf("CreateContainer: %w", err)
	}
	created := time.Since(start)
	if _, err := cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid}); err != nil {
		return fmt.Errorf("StartContainer: %w", err)
	}
	createStart := time.Since(start)

	var out bytes.Buffer
	for {
		r, err := cli.Agent.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: cid, ExecId: cid, Len: 4096})
		if err != nil {
			return fmt.Errorf("ReadStdout: %w", err)
		}
		if len(r.Data) == 0 {
			break
		}
		out.Write(r.Data)
	}
	w, err := cli.Agent.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: cid, ExecId: cid})
	if err != nil {
		return fmt.Errorf("WaitProcess: %w", err)
	}
	exited := time.Since(start)
	fmt.Printf("container says: %s", out.String())
	if _, err := cli.Agent.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: cid}); err != nil {
		return fmt.Errorf("RemoveContainer: %w", err)
	}

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
	fmt.Printf("QEMU start to agent ready:   %v\n", ready.Round(time.Millisecond))
	fmt.Printf("container create:            %v\n", created.Round(time.Millisecond))
	fmt.Printf("container create+start:      %v\n", createStart.Round(time.Millisecond))
	fmt.Printf("container create to exit:    %v (status %d)\n", exited.Round(time.Millisecond), w.Status)
	fmt.Printf("DestroySandbox to QEMU exit: %v (QEMU status %d)\n", time.Since(down).Round(time.Millisecond), code)
	if code != 0 {
		return fmt.Errorf("QEMU exited with status %d", code)
	}
	return nil
}
