package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/sandbox-guest/sandbox-guest/image-builder/cmdline"
	"github.com/sandbox-guest/sandbox-guest/image-builder/initrd"
	"github.com/sandbox-guest/sandbox-guest/image-builder/kconfig"
	"github.com/sandbox-guest/sandbox-guest/image-builder/manifest"
)

func cmdImage(ctx context.Context, args []string, p *progress, log *slog.Logger) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var s sourceFlags
	s.register(fs)
	var f initrdFlags
	f.register(fs)
	outDir := fs.String("out-dir", "build/guest", "output directory")
	requirements := fs.String("requirements", "agent/kernel-requirements.txt", "kernel options the agent needs, checked against the final config (empty: skip)")
	nrCPUs := fs.Int("nr-cpus", cmdline.Default().NrCPUs, "nr_cpus= on the default command line")
	agentLog := fs.String("agent-log", cmdline.Default().AgentLog, "agent.log= on the default command line")
	agentVersion := fs.String("agent-version", "", "agent version for the manifest (default: from the binary's build information)")
	jobs := fs.Int("jobs", 2, "make -j for the kernel build")
	verbose := fs.Bool("v", false, "show make's output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}

	src, err := resolveSource(ctx, &s, p)
	if err != nil {
		return err
	}
	vc, err := makeConfig(ctx, &s, src, p, log)
	if err != nil {
		return err
	}
	err = p.step("kernel requirements of the agent and the initrd", func() (string, error) {
		opt, err := initrd.KernelOption(f.compression)
		if err != nil {
			return "", err
		}
		if opt != "" && vc.cfg.Value(opt) != "y" {
			return "", fmt.Errorf("initrd compression %s needs %s=y in the kernel config", f.compression, opt)
		}
		if f.iptables {
			if err := initrd.CheckIPTablesKernel(vc.cfg.Value); err != nil {
				return "", err
			}
		}
		if *requirements == "" {
			return "requirements check skipped", nil
		}
		rf, err := os.Open(*requirements)
		if err != nil {
			return "", fmt.Errorf("requirements: %w", err)
		}
		defer rf.Close()
		reqs, err := kconfig.ParseRequirements(rf)
		if err != nil {
			return "", fmt.Errorf("%s: %w", *requirements, err)
		}
		if err := kconfig.CheckRequirements(reqs, vc.cfg); err != nil {
			return "", fmt.Errorf("%s: %w", *requirements, err)
		}
		return fmt.Sprintf("%d requirements from %s met", len(reqs), *requirements), nil
	})
	if err != nil {
		return err
	}
	kern, err := buildKernel(ctx, &s, src, vc, *jobs, *verbose, p)
	if err != nil {
		return err
	}

	paths := map[string]string{}
	for _, n := range []string{"vmlinuz", "initrd.img", "kernel.config", "cmdline", "manifest.json"} {
		paths[n] = filepath.Join(*outDir, n)
	}
	var agent manifest.Agent
	err = p.step("agent build information", func() (string, error) {
		var err error
		agent, err = manifest.ReadAgent(f.agent)
		if err != nil {
			return "", err
		}
		if *agentVersion != "" {
			agent.Version = *agentVersion
		}
		if agent.GOFIPS140 == "" {
			log.Warn("the agent was built without GOFIPS140: the image cannot serve FIPS nodes (fips=1)", "agent", f.agent)
		}
		return fmt.Sprintf("%s %s, %s, GOFIPS140=%q, %d modules", agent.Path, agent.Version, agent.GoVersion, agent.GOFIPS140, len(agent.Modules)), nil
	})
	if err != nil {
		return err
	}
	res, err := buildInitrd(&f, paths["initrd.img"], p, log)
	if err != nil {
		return err
	}
	var m manifest.Manifest
	err = p.step("kernel, config, command line and manifest", func() (string, error) {
		if err := copyFile(kern.BzImage, paths["vmlinuz"]); err != nil {
			return "", err
		}
		if err := writeFile(paths["kernel.config"], vc.data); err != nil {
			return "", err
		}
		o := cmdline.Default()
		o.NrCPUs, o.AgentLog, o.Debug = *nrCPUs, *agentLog, f.debug
		line, err := cmdline.Build(o)
		if err != nil {
			return "", err
		}
		if err := writeFile(paths["cmdline"], []byte(line+"\n")); err != nil {
			return "", err
		}
		m = manifest.Manifest{
			Kernel: manifest.Kernel{Version: src.version.String(), Series: src.version.Series(),
				Source: filepath.Base(s.tarball), Package: debianPackage(ctx, s.tarball), ConfigHash: kern.ConfigHash},
			Initrd:           manifest.Initrd{Compression: res.Compression, Debug: f.debug, CPIOSize: res.CPIOSize},
			Agent:            agent,
			Cmdline:          line,
			FIPSCapable:      vc.cfg.Value("CONFIG_CRYPTO_FIPS") == "y" && agent.GOFIPS140 != "",
			BuilderGoVersion: runtime.Version(),
		}
		for _, n := range []string{"vmlinuz", "initrd.img", "kernel.config", "cmdline"} {
			a, err := manifest.HashFile(paths[n])
			if err != nil {
				return "", err
			}
			m.Artifacts = append(m.Artifacts, a)
		}
		if err := manifest.Write(paths["manifest.json"], m); err != nil {
			return "", err
		}
		return fmt.Sprintf("wrote %s", *outDir), nil
	})
	if err != nil {
		return err
	}
	for _, a := range m.Artifacts {
		fmt.Fprintf(p.w, "    %-14s %9d  %s\n", a.Name, a.Size, a.SHA256)
	}
	p.total()
	return nil
}

// debianPackage names the Debian package (with version) that installed
// tarball, or "" when dpkg does not know it.
func debianPackage(ctx context.Context, tarball string) string {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-S", tarball).Output()
	if err != nil {
		return ""
	}
	pkg, _, ok := strings.Cut(strings.TrimSpace(string(out)), ":")
	if !ok || strings.ContainsAny(pkg, " ,") {
		return ""
	}
	ver, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return pkg
	}
	return pkg + " " + strings.TrimSpace(string(ver))
}
