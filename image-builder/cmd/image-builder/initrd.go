package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sandbox-guest/sandbox-guest/image-builder/initrd"
)

type initrdFlags struct {
	agent       string
	rootfs      string
	debug       bool
	busybox     string
	compression string
	iptables    bool
	agentImage  bool
}

func (f *initrdFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.agent, "agent", "bin/kata-agent", "static agent binary")
	fs.BoolVar(&f.agentImage, "agent-image", true, "put the agent in a compressed squashfs image that a small /init mounts and executes (false: the agent is /init)")
	fs.StringVar(&f.rootfs, "rootfs", "rootfs", "directory copied into the initramfs as is")
	fs.BoolVar(&f.debug, "debug", false, "add busybox with a shell and core tools for the debug console")
	fs.StringVar(&f.busybox, "busybox", "/bin/busybox", "static busybox for --debug (Debian busybox-static)")
	fs.StringVar(&f.compression, "compression", "", "zstd, gzip or none (default: none with the agent image, which is compressed already; zstd without)")
	fs.BoolVar(&f.iptables, "iptables", true, "add Debian's iptables-legacy tools (package iptables) and their libraries for GetIPTables/SetIPTables")
}

// format is the initrd's compression: the flag's, or the default for the
// layout.
func (f *initrdFlags) format() string {
	if f.compression != "" {
		return f.compression
	}
	return initrd.DefaultCompression(f.agentImage)
}

func buildInitrd(f *initrdFlags, out string, p *progress, log *slog.Logger) (initrd.Result, error) {
	var res initrd.Result
	err := p.step("initrd", func() (string, error) {
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return "", fmt.Errorf("create %s: %w", filepath.Dir(out), err)
		}
		var err error
		res, err = initrd.Build(initrd.Options{Agent: f.agent, RootfsDir: f.rootfs, Debug: f.debug,
			Busybox: f.busybox, Compression: f.format(), IPTables: f.iptables, AgentImage: f.agentImage, Output: out, Log: log})
		if err != nil {
			return "", err
		}
		msg := fmt.Sprintf("%s: %d bytes %s (cpio %d bytes), sha256 %s", out, res.Size, res.Compression, res.CPIOSize, res.SHA256)
		if res.AgentImageSize > 0 {
			msg += fmt.Sprintf("; agent in %s, %d bytes", initrd.AgentImagePath, res.AgentImageSize)
		}
		return msg, nil
	})
	return res, err
}

func cmdInitrd(args []string, p *progress, log *slog.Logger) error {
	fs := flag.NewFlagSet("initrd", flag.ContinueOnError)
	var f initrdFlags
	f.register(fs)
	out := fs.String("out", "build/guest/initrd.img", "output file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, err := buildInitrd(&f, *out, p, log)
	return err
}
