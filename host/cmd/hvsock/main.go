// Command hvsock is a vhost-user-vsock backend for QEMU's vhost-user-vsock-pci
// device, for hosts without the vhost_vsock kernel module. Host programs reach
// the guest's vsock ports through a hybrid vsock Unix socket: connect, write
// "CONNECT <port>\n", read "OK <host port>\n", then use the stream. Guest
// connections to host port P go to the Unix socket "<uds>_P".
//
// It serves one QEMU until QEMU disconnects or the process gets SIGINT or
// SIGTERM. Start it before QEMU: QEMU does not retry the vhost-user socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sandbox-guest/sandbox-guest/host/hvsock"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "hvsock:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("hvsock", flag.ContinueOnError)
	socket := fs.String("socket", "", "vhost-user `path` QEMU connects to (-chardev socket,path=...)")
	uds := fs.String("uds", "", "hybrid vsock Unix socket `path` for host clients")
	cid := fs.Uint64("guest-cid", 3, "guest context id reported to the guest")
	timeout := fs.Duration("connect-timeout", 10*time.Second, "how long a connection waits to be accepted")
	verbose := fs.Bool("v", false, "log every vhost-user request and stream event")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *socket == "" || *uds == "" || fs.NArg() != 0 {
		fs.Usage()
		return errors.New("--socket and --uds are required")
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// Catch signals before the sockets exist, so that whoever waits for the
	// socket to appear can already stop us cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b, err := hvsock.Listen(*socket, *uds, *cid, hvsock.WithLogger(log), hvsock.WithConnectTimeout(*timeout))
	if err != nil {
		return err
	}
	defer b.Close()
	log.Info("hvsock listening", "socket", *socket, "uds", *uds, "guest_cid", *cid)
	err = b.Serve(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
