package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/sandbox-guest/sandbox-guest/image-builder/kataconfig"
)

// cmdKataInstall installs the built image for the Kata runtime and writes
// its configuration drop-in (make install), then reads the drop-in back as
// the runtime would and checks the files it names.
func cmdKataInstall(args []string, p *progress) error {
	fs := flag.NewFlagSet("kata-install", flag.ContinueOnError)
	var o kataconfig.InstallOptions
	fs.StringVar(&o.ImageDir, "image-dir", "build/guest", "the built image (vmlinuz, initrd.img, cmdline)")
	fs.StringVar(&o.DestDir, "destdir", "", "staging root prepended to every installed path (DESTDIR)")
	fs.StringVar(&o.Layout.Prefix, "prefix", "/usr", "installation prefix (PREFIX)")
	fs.StringVar(&o.Layout.ConfigDir, "config-dir", "", "directory of Kata's configuration.toml whose config.d gets the drop-in (default PREFIX/share/defaults/kata-containers)")
	fs.StringVar(&o.Layout.Variant, "variant", "sandbox-guest", "name part of the installed kernel, initrd and drop-in")
	fs.StringVar(&o.Agentctl, "agentctl", "", "agentctl binary to install into PREFIX/bin (empty: none)")
	fs.StringVar(&o.VirtiofsDaemon, "virtiofsd", "", "virtio_fs_daemon to configure (empty: keep the Kata installation's own)")
	fs.BoolVar(&o.VirtiofsLegacy, "virtiofsd-legacy", false, "the daemon is QEMU's C virtiofsd (-o options; Kata runtimes before 3.2 only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	return p.step("kata: install the image and the runtime configuration drop-in", func() (string, error) {
		in, err := kataconfig.Install(o)
		if err != nil {
			return "", err
		}
		if _, err := kataconfig.Verify(o.DestDir, in.Fragment); err != nil {
			return "", fmt.Errorf("installed drop-in: %w", err)
		}
		lines := []string{"kernel   " + in.Kernel, "initrd   " + in.Initrd, "drop-in  " + in.Fragment}
		if in.Agentctl != "" {
			lines = append(lines, "agentctl "+in.Agentctl)
		}
		if len(in.Dropped) > 0 {
			lines = append(lines, "left to the runtime: "+strings.Join(in.Dropped, " "))
		}
		if o.DestDir != "" {
			lines = append(lines, "under DESTDIR "+o.DestDir)
		}
		return strings.Join(lines, "\n    "), nil
	})
}
