package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// BuildOptions describe one bzImage build.
type BuildOptions struct {
	SrcDir   string  // extracted, pristine source tree
	CacheDir string  // e.g. /var/cache/sandbox-guest
	Version  Version // of SrcDir
	Config   []byte  // verified .config
	Jobs     int     // make -j
	// Log receives make's output; nil discards it (it is also kept in the
	// object directory as build.log).
	Log io.Writer
	// Progress receives progress lines while make builds bzImage (objects
	// compiled, elapsed time, an estimate from the cache's build history);
	// nil prints none. ProgressTTY rewrites one line in place, for a
	// terminal; otherwise a plain line comes every ProgressInterval
	// (DefaultInterval when zero), for logs.
	Progress         io.Writer
	ProgressTTY      bool
	ProgressInterval time.Duration
}

// Artifact is a cached kernel build.
type Artifact struct {
	Dir        string // cacheDir/kernel/<version>-<confighash>
	BzImage    string
	Config     string
	ConfigHash string
	Hit        bool // served from the cache without running make
	// Objects and Duration describe the build that ran (zero on a hit).
	Objects  int
	Duration time.Duration
}

// ConfigHash is the short hash of a .config used in cache keys.
func ConfigHash(config []byte) string {
	sum := sha256.Sum256(config)
	return hex.EncodeToString(sum[:])[:16]
}

// Fixed build metadata so the same source and config give the same kernel
// banner on every machine.
var reproducibleEnv = []string{
	"KBUILD_BUILD_TIMESTAMP=1970-01-01",
	"KBUILD_BUILD_USER=sandbox-guest",
	"KBUILD_BUILD_HOST=sandbox-guest",
	"KBUILD_BUILD_VERSION=1",
}

// Build returns the cached bzImage for (version, config), building it first
// when it is not cached. The object directory cacheDir/obj/linux-<version>
// persists, so a config change rebuilds incrementally.
func Build(ctx context.Context, o BuildOptions) (Artifact, error) {
	hash := ConfigHash(o.Config)
	a := Artifact{
		Dir:        filepath.Join(o.CacheDir, "kernel", o.Version.String()+"-"+hash),
		ConfigHash: hash,
	}
	a.BzImage = filepath.Join(a.Dir, "bzImage")
	a.Config = filepath.Join(a.Dir, ".config")
	if cached(a, o.Config) {
		a.Hit = true
		return a, nil
	}
	if err := os.MkdirAll(filepath.Dir(a.Dir), 0o755); err != nil {
		return a, fmt.Errorf("create kernel cache: %w", err)
	}
	unlock, err := lock(filepath.Join(o.CacheDir, "kernel", ".lock"))
	if err != nil {
		return a, err
	}
	defer unlock()
	if cached(a, o.Config) { // built by someone else while we waited
		a.Hit = true
		return a, nil
	}

	obj := filepath.Join(o.CacheDir, "obj", "linux-"+o.Version.String())
	if err := os.MkdirAll(obj, 0o755); err != nil {
		return a, fmt.Errorf("create object dir: %w", err)
	}
	objConfig := filepath.Join(obj, ".config")
	if old, err := os.ReadFile(objConfig); err != nil || !bytes.Equal(old, o.Config) {
		if err := os.WriteFile(objConfig, o.Config, 0o644); err != nil {
			return a, fmt.Errorf("write .config: %w", err)
		}
	}
	logPath := filepath.Join(obj, "build.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return a, fmt.Errorf("create build log: %w", err)
	}
	defer logFile.Close()
	var out io.Writer = logFile
	if o.Log != nil {
		out = io.MultiWriter(logFile, o.Log)
	}
	jobs := o.Jobs
	if jobs < 1 {
		jobs = 1
	}
	mk := func(args ...string) error {
		base := []string{"-C", o.SrcDir, "O=" + obj, "ARCH=" + Arch}
		cmd := exec.CommandContext(ctx, "make", append(base, args...)...)
		cmd.Env = append(os.Environ(), reproducibleEnv...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("make %v: %w (log: %s)", args, err, logPath)
		}
		return nil
	}
	// olddefconfig must not change a config produced by this kernel's own
	// kconfig; if it does, the config came from somewhere else.
	if err := mk("-s", "olddefconfig"); err != nil {
		return a, err
	}
	after, err := os.ReadFile(objConfig)
	if err != nil {
		return a, fmt.Errorf("read .config after olddefconfig: %w", err)
	}
	if !bytes.Equal(after, o.Config) {
		return a, fmt.Errorf("the config is not a complete %s config: olddefconfig changed it (regenerate it with image-builder kernel-config)", o.Version)
	}
	// A build is fresh when the object directory holds no earlier kernel;
	// the estimate comes from the last build of the same kind.
	_, err = os.Stat(filepath.Join(obj, "vmlinux"))
	fresh := os.IsNotExist(err)
	historyPath := filepath.Join(o.CacheDir, "kernel", HistoryFile)
	history, herr := ReadHistory(historyPath)
	if herr != nil && o.Progress != nil {
		fmt.Fprintf(o.Progress, "    %v (no estimate)\n", herr)
	}
	meter := &Meter{}
	out = io.MultiWriter(out, meter)
	started := time.Now()
	stop := startProgress(o, meter, EstimateFor(history, o.Version.String(), fresh))
	err = mk("-j"+strconv.Itoa(jobs), "bzImage")
	stop()
	if err != nil {
		return a, err
	}
	a.Objects, _ = meter.Objects()
	a.Duration = time.Since(started)

	tmp, err := os.MkdirTemp(filepath.Dir(a.Dir), ".build-")
	if err != nil {
		return a, fmt.Errorf("create cache entry: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp creates 0700
		return a, fmt.Errorf("cache entry: %w", err)
	}
	if err := copyFile(filepath.Join(obj, "arch", "x86", "boot", "bzImage"), filepath.Join(tmp, "bzImage")); err != nil {
		return a, err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".config"), o.Config, 0o644); err != nil {
		return a, fmt.Errorf("write cached .config: %w", err)
	}
	if err := os.RemoveAll(a.Dir); err != nil {
		return a, fmt.Errorf("replace cache entry: %w", err)
	}
	if err := os.Rename(tmp, a.Dir); err != nil {
		return a, fmt.Errorf("move cache entry into place: %w", err)
	}
	rec := BuildRecord{Version: o.Version.String(), ConfigHash: hash, Jobs: jobs, Objects: a.Objects,
		Seconds: a.Duration.Seconds(), Fresh: fresh, Finished: time.Now().UTC()}
	if err := AppendHistory(historyPath, rec); err != nil && o.Progress != nil {
		// The kernel is built and cached; only the next estimate suffers.
		fmt.Fprintf(o.Progress, "    %v\n", err)
	}
	return a, nil
}

// startProgress reports the build's progress until the returned stop is
// called.
func startProgress(o BuildOptions, m *Meter, est Estimate) (stop func()) {
	if o.Progress == nil {
		return func() {}
	}
	r := &Reporter{W: o.Progress, TTY: o.ProgressTTY, Interval: o.ProgressInterval, Count: m.Objects, Expect: est}
	r.Begin()
	tick := time.Second
	if r.Interval < tick {
		tick = r.Interval
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.Tick()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		r.End()
	}
}

func cached(a Artifact, config []byte) bool {
	got, err := os.ReadFile(a.Config)
	if err != nil || !bytes.Equal(got, config) {
		return false
	}
	st, err := os.Stat(a.BzImage)
	return err == nil && st.Mode().IsRegular() && st.Size() > 0
}

// lock takes an exclusive flock so that two builds on one machine do not
// share an object directory at the same time.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open kernel cache lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock kernel cache: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}
