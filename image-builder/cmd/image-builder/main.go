// Command image-builder builds the guest image: it merges and verifies the
// kernel config fragments, builds and caches the kernel, writes the
// initramfs and the manifest.
//
//	image-builder kernel-config   merge kernel-config/*.conf, verify, write the .config
//	image-builder kernel          build bzImage (cached) from the verified config
//	image-builder initrd          write the initramfs
//	image-builder image           all of the above into build/guest/
//	image-builder boot-check      boot a kernel and initrd in QEMU and check the console
//	image-builder kata-install    install the image and a Kata runtime configuration drop-in
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const usage = `usage: image-builder <command> [flags]

commands:
  kernel-config  merge the kernel config fragments onto allnoconfig and verify every option
  kernel         build bzImage from the pinned source with the verified config (cached)
  initrd         write the initramfs (agent image and /init, rootfs/, busybox with --debug)
  image          build everything into build/guest/ with manifest.json
  boot-check     boot a kernel and initrd under QEMU and check what the console prints
  kata-install   install the image where Kata keeps guest assets, with a configuration drop-in

run "image-builder <command> -h" for the command's flags
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "image-builder:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	p := &progress{w: stderr}
	switch args[0] {
	case "kernel-config":
		return cmdKernelConfig(ctx, args[1:], p, log)
	case "kernel":
		return cmdKernel(ctx, args[1:], p, log)
	case "initrd":
		return cmdInitrd(args[1:], p, log)
	case "image":
		return cmdImage(ctx, args[1:], p, log)
	case "boot-check":
		return cmdBootCheck(ctx, args[1:], p)
	case "kata-install":
		return cmdKataInstall(args[1:], p)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// progress prints one line per step with the time it took.
type progress struct {
	w     io.Writer
	start time.Time
}

func (p *progress) step(name string, fn func() (string, error)) error {
	fmt.Fprintf(p.w, "==> %s\n", name)
	t := time.Now()
	if p.start.IsZero() {
		p.start = t
	}
	detail, err := fn()
	d := time.Since(t).Round(10 * time.Millisecond)
	if err != nil {
		fmt.Fprintf(p.w, "    FAILED after %s\n", d)
		return fmt.Errorf("%s: %w", name, err)
	}
	if detail != "" {
		fmt.Fprintf(p.w, "    %s\n", detail)
	}
	fmt.Fprintf(p.w, "    done in %s\n", d)
	return nil
}

func (p *progress) total() {
	if !p.start.IsZero() {
		fmt.Fprintf(p.w, "==> total %s\n", time.Since(p.start).Round(10*time.Millisecond))
	}
}
