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
	"github.com/sandbox-guest/sandbox-guest/image-builder/kernel"
	"github.com/sandbox-guest/sandbox-guest/image-builder/manifest"
)

// imageFlags are the flags of the image command.
type imageFlags struct {
	src          sourceFlags
	initrd       initrdFlags
	outDir       string
	requirements string
	nrCPUs       int
	agentLog     string
	agentVersion string
	jobs         int
	verbose      bool
}

func parseImageFlags(args []string) (*imageFlags, error) {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	o := &imageFlags{}
	o.src.register(fs)
	o.initrd.register(fs)
	fs.StringVar(&o.outDir, "out-dir", "build/guest", "output directory")
	fs.StringVar(&o.requirements, "requirements", "agent/kernel-requirements.txt", "kernel options the agent needs, checked against the final config (empty: skip)")
	fs.IntVar(&o.nrCPUs, "nr-cpus", cmdline.Default().NrCPUs, "nr_cpus= on the default command line")
	fs.StringVar(&o.agentLog, "agent-log", cmdline.Default().AgentLog, "agent.log= on the default command line")
	fs.StringVar(&o.agentVersion, "agent-version", "", "agent version for the manifest (default: from the binary's build information)")
	fs.IntVar(&o.jobs, "jobs", 2, "make -j for the kernel build")
	fs.BoolVar(&o.verbose, "v", false, "show make's output")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	return o, nil
}

// cmdImage builds the kernel (cached), the initrd, the default command
// line and the manifest into the output directory.
func cmdImage(ctx context.Context, args []string, p *progress, log *slog.Logger) error {
	o, err := parseImageFlags(args)
	if err != nil {
		return err
	}
	src, err := resolveSource(ctx, &o.src, p)
	if err != nil {
		return err
	}
	vc, err := makeConfig(ctx, &o.src, src, p, log)
	if err != nil {
		return err
	}
	err = p.step("kernel requirements of the agent and the initrd", func() (string, error) {
		return checkKernelRequirements(vc.cfg, &o.initrd, o.requirements)
	})
	if err != nil {
		return err
	}
	kern, err := buildKernel(ctx, &o.src, src, vc, o.jobs, o.verbose, p)
	if err != nil {
		return err
	}
	var agent manifest.Agent
	err = p.step("agent build information", func() (string, error) {
		agent, err = readAgent(o, log)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s, %s, GOFIPS140=%q, %d modules", agent.Path, agent.Version, agent.GoVersion, agent.GOFIPS140, len(agent.Modules)), nil
	})
	if err != nil {
		return err
	}
	res, err := buildInitrd(&o.initrd, filepath.Join(o.outDir, "initrd.img"), p, log)
	if err != nil {
		return err
	}
	var m manifest.Manifest
	err = p.step("kernel, config, command line and manifest", func() (string, error) {
		m, err = writeImage(ctx, o, src, vc, kern, agent, res)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("wrote %s", o.outDir), nil
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

// checkKernelRequirements checks the final kernel config against what the
// initrd (its compression, iptables) and the agent (requirements file)
// need.
func checkKernelRequirements(cfg kconfig.Config, f *initrdFlags, requirements string) (string, error) {
	opt, err := initrd.KernelOption(f.format())
	if err != nil {
		return "", err
	}
	if opt != "" && cfg.Value(opt) != "y" {
		return "", fmt.Errorf("initrd compression %s needs %s=y in the kernel config", f.format(), opt)
	}
	if f.iptables {
		if err := initrd.CheckIPTablesKernel(cfg.Value); err != nil {
			return "", err
		}
	}
	if requirements == "" {
		return "requirements check skipped", nil
	}
	rf, err := os.Open(requirements)
	if err != nil {
		return "", fmt.Errorf("requirements: %w", err)
	}
	defer rf.Close()
	reqs, err := kconfig.ParseRequirements(rf)
	if err != nil {
		return "", fmt.Errorf("%s: %w", requirements, err)
	}
	if err := kconfig.CheckRequirements(reqs, cfg); err != nil {
		return "", fmt.Errorf("%s: %w", requirements, err)
	}
	return fmt.Sprintf("%d requirements from %s met", len(reqs), requirements), nil
}

// readAgent reads the agent binary's build information for the manifest.
func readAgent(o *imageFlags, log *slog.Logger) (manifest.Agent, error) {
	agent, err := manifest.ReadAgent(o.initrd.agent)
	if err != nil {
		return agent, err
	}
	if o.agentVersion != "" {
		agent.Version = o.agentVersion
	}
	if agent.GOFIPS140 == "" {
		log.Warn("the agent was built without GOFIPS140: the image cannot serve FIPS nodes (fips=1)", "agent", o.initrd.agent)
	}
	return agent, nil
}

// writeImage writes the kernel, its config, the default command line and
// the manifest (with every artifact's hash) next to the initrd.
func writeImage(ctx context.Context, o *imageFlags, src source, vc verifiedConfig, kern kernel.Artifact, agent manifest.Agent, res initrd.Result) (manifest.Manifest, error) {
	paths := map[string]string{}
	for _, n := range []string{"vmlinuz", "initrd.img", "kernel.config", "cmdline", "manifest.json"} {
		paths[n] = filepath.Join(o.outDir, n)
	}
	var m manifest.Manifest
	if err := copyFile(kern.BzImage, paths["vmlinuz"]); err != nil {
		return m, err
	}
	if err := writeFile(paths["kernel.config"], vc.data); err != nil {
		return m, err
	}
	c := cmdline.Default()
	c.NrCPUs, c.AgentLog, c.Debug = o.nrCPUs, o.agentLog, o.initrd.debug
	line, err := cmdline.Build(c)
	if err != nil {
		return m, err
	}
	if err := writeFile(paths["cmdline"], []byte(line+"\n")); err != nil {
		return m, err
	}
	m = manifest.Manifest{
		Kernel: manifest.Kernel{Version: src.version.String(), Series: src.version.Series(),
			Source: filepath.Base(o.src.tarball), Package: debianPackage(ctx, o.src.tarball), ConfigHash: kern.ConfigHash},
		Initrd: manifest.Initrd{Compression: res.Compression, Debug: o.initrd.debug, CPIOSize: res.CPIOSize,
			AgentImageSize: res.AgentImageSize},
		Agent:            agent,
		Cmdline:          line,
		FIPSCapable:      vc.cfg.Value("CONFIG_CRYPTO_FIPS") == "y" && agent.GOFIPS140 != "",
		BuilderGoVersion: runtime.Version(),
	}
	for _, n := range []string{"vmlinuz", "initrd.img", "kernel.config", "cmdline"} {
		a, err := manifest.HashFile(paths[n])
		if err != nil {
			return m, err
		}
		m.Artifacts = append(m.Artifacts, a)
	}
	return m, manifest.Write(paths["manifest.json"], m)
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
