package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/sandbox-guest/sandbox-guest/image-builder/kconfig"
	"github.com/sandbox-guest/sandbox-guest/image-builder/kernel"
)

// sourceFlags locate the pinned kernel source and the caches.
type sourceFlags struct {
	tarball   string
	cacheDir  string
	series    string
	fragments string
	allowlist string
}

func (s *sourceFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.tarball, "tarball", kernel.DefaultTarball, "kernel source tarball (Debian linux-source-"+kernel.PinnedSeries+")")
	fs.StringVar(&s.cacheDir, "cache-dir", kernel.DefaultCacheDir, "cache for the extracted source, object files and built kernels")
	fs.StringVar(&s.series, "series", kernel.PinnedSeries, "required kernel series")
	fs.StringVar(&s.fragments, "fragments", "kernel-config", "directory of *.conf kernel config fragments")
	fs.StringVar(&s.allowlist, "allowlist", "", "file of option names whose mismatch only warns (exact names, one per line)")
}

// source is the resolved, extracted kernel source.
type source struct {
	version kernel.Version
	dir     string
}

func resolveSource(ctx context.Context, s *sourceFlags, p *progress) (source, error) {
	var src source
	err := p.step("kernel source", func() (string, error) {
		v, err := kernel.TarballVersion(ctx, s.tarball)
		if err != nil {
			return "", err
		}
		if err := v.CheckSeries(s.series); err != nil {
			return "", fmt.Errorf("%s: %w", s.tarball, err)
		}
		dir, hit, err := kernel.Extract(ctx, s.tarball, v, s.cacheDir)
		if err != nil {
			return "", err
		}
		src = source{version: v, dir: dir}
		how := "extracted to"
		if hit {
			how = "cached at"
		}
		return fmt.Sprintf("linux %s from %s, %s %s", v, s.tarball, how, dir), nil
	})
	return src, err
}

// verifiedConfig is a generated and verified .config.
type verifiedConfig struct {
	data []byte
	cfg  kconfig.Config
}

func makeConfig(ctx context.Context, s *sourceFlags, src source, p *progress, log *slog.Logger) (verifiedConfig, error) {
	var vc verifiedConfig
	err := p.step("kernel config: merge fragments onto allnoconfig and verify", func() (string, error) {
		files, err := kconfig.FragmentFiles(s.fragments)
		if err != nil {
			return "", err
		}
		reqs, err := kconfig.ReadFragments(files)
		if err != nil {
			return "", err
		}
		allow := kconfig.Allowlist{}
		if s.allowlist != "" {
			f, err := os.Open(s.allowlist)
			if err != nil {
				return "", fmt.Errorf("allowlist: %w", err)
			}
			allow, err = kconfig.ParseAllowlist(f)
			f.Close()
			if err != nil {
				return "", fmt.Errorf("%s: %w", s.allowlist, err)
			}
		}
		obj := filepath.Join(s.cacheDir, "obj", "kconfig-"+src.version.String())
		cfg, data, err := kconfig.Generate(ctx, src.dir, obj, kernel.Arch, kconfig.Render(reqs))
		if err != nil {
			return "", err
		}
		deps, derr := kconfig.ParseKconfigTree(os.DirFS(src.dir), "Kconfig", map[string]string{"SRCARCH": kernel.SrcArch})
		if derr != nil {
			log.Warn("cannot read Kconfig dependencies; mismatches will not explain them", "err", derr)
			deps = nil
		}
		all, err := kconfig.Verify(reqs, cfg, allow, deps)
		for _, m := range all {
			if m.Allowed {
				log.Warn("allowlisted kernel option mismatch", "option", m.Name, "requested", m.Value, "got", m.Got)
			}
		}
		if err != nil {
			return "", err
		}
		vc = verifiedConfig{data: data, cfg: cfg}
		return fmt.Sprintf("%d options requested by %d fragments, all present", len(reqs), len(files)), nil
	})
	return vc, err
}

func cmdKernelConfig(ctx context.Context, args []string, p *progress, log *slog.Logger) error {
	fs := flag.NewFlagSet("kernel-config", flag.ContinueOnError)
	var s sourceFlags
	s.register(fs)
	out := fs.String("out", "build/guest/kernel.config", "where to write the verified .config")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, err := resolveSource(ctx, &s, p)
	if err != nil {
		return err
	}
	vc, err := makeConfig(ctx, &s, src, p, log)
	if err != nil {
		return err
	}
	return writeFile(*out, vc.data)
}

func cmdKernel(ctx context.Context, args []string, p *progress, log *slog.Logger) error {
	fs := flag.NewFlagSet("kernel", flag.ContinueOnError)
	var s sourceFlags
	s.register(fs)
	out := fs.String("out", "build/guest/vmlinuz", "where to copy bzImage")
	jobs := fs.Int("jobs", 2, "make -j")
	verbose := fs.Bool("v", false, "show make's output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, err := resolveSource(ctx, &s, p)
	if err != nil {
		return err
	}
	vc, err := makeConfig(ctx, &s, src, p, log)
	if err != nil {
		return err
	}
	a, err := buildKernel(ctx, &s, src, vc, *jobs, *verbose, p)
	if err != nil {
		return err
	}
	return copyFile(a.BzImage, *out)
}

func buildKernel(ctx context.Context, s *sourceFlags, src source, vc verifiedConfig, jobs int, verbose bool, p *progress) (kernel.Artifact, error) {
	var a kernel.Artifact
	err := p.step("kernel: bzImage", func() (string, error) {
		var w io.Writer
		if verbose {
			w = p.w
		}
		if jobs < 1 {
			jobs = runtime.NumCPU()
		}
		var err error
		a, err = kernel.Build(ctx, kernel.BuildOptions{SrcDir: src.dir, CacheDir: s.cacheDir, Version: src.version,
			Config: vc.data, Jobs: jobs, Log: w})
		if err != nil {
			return "", err
		}
		st, err := os.Stat(a.BzImage)
		if err != nil {
			return "", fmt.Errorf("built kernel: %w", err)
		}
		how := "built"
		if a.Hit {
			how = "cache hit"
		}
		return fmt.Sprintf("%s: %s (%d bytes)", how, a.BzImage, st.Size()), nil
	})
	return a, err
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	// Leave an identical file alone so its mtime does not trigger rebuilds.
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return writeFile(dst, data)
}
