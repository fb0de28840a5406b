// Package kernel pins the kernel source, extracts it once into a cache, and
// builds bzImage from a verified config, caching the result outside the
// project tree keyed by source version and config hash.
package kernel

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Defaults for this project: Debian's linux-source-6.12 package.
const (
	DefaultTarball  = "/usr/src/linux-source-6.12.tar.xz"
	DefaultCacheDir = "/var/cache/sandbox-guest"
	PinnedSeries    = "6.12"
	// Arch is the kernel ARCH the guest is built for.
	Arch = "x86_64"
	// SrcArch is the arch/ directory for Arch.
	SrcArch = "x86"
)

// ErrWrongSeries is returned when the source is not the pinned series.
var ErrWrongSeries = errors.New("kernel source is not the pinned series")

// ErrNoVersion is returned when the Makefile carries no version.
var ErrNoVersion = errors.New("no kernel version in Makefile")

// Version is the kernel version from the top-level Makefile.
type Version struct {
	Version, PatchLevel, SubLevel int
	Extra                         string
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d%s", v.Version, v.PatchLevel, v.SubLevel, v.Extra)
}

// Series is "VERSION.PATCHLEVEL", e.g. 6.12.
func (v Version) Series() string { return fmt.Sprintf("%d.%d", v.Version, v.PatchLevel) }

// CheckSeries fails unless v belongs to series (e.g. "6.12").
func (v Version) CheckSeries(series string) error {
	if v.Series() != series {
		return fmt.Errorf("%w: found %s, want %s.x", ErrWrongSeries, v, series)
	}
	return nil
}

// ParseMakefileVersion reads VERSION, PATCHLEVEL, SUBLEVEL and EXTRAVERSION
// from the top of a kernel Makefile.
func ParseMakefileVersion(r io.Reader) (Version, error) {
	var v Version
	found := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 0; sc.Scan() && n < 50; n++ {
		key, val, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		var err error
		switch key {
		case "VERSION":
			v.Version, err = strconv.Atoi(val)
		case "PATCHLEVEL":
			v.PatchLevel, err = strconv.Atoi(val)
		case "SUBLEVEL":
			v.SubLevel, err = strconv.Atoi(val)
		case "EXTRAVERSION":
			v.Extra = val
		default:
			continue
		}
		if err != nil {
			return Version{}, fmt.Errorf("kernel Makefile %s: %w", key, err)
		}
		found[key] = true
	}
	if err := sc.Err(); err != nil {
		return Version{}, fmt.Errorf("read kernel Makefile: %w", err)
	}
	if !found["VERSION"] || !found["PATCHLEVEL"] || !found["SUBLEVEL"] {
		return Version{}, ErrNoVersion
	}
	return v, nil
}

// TarballVersion reads the version from the Makefile at the top of the
// source tarball, decompressing only until it is found.
func TarballVersion(ctx context.Context, tarball string) (Version, error) {
	if _, err := os.Stat(tarball); err != nil {
		return Version{}, fmt.Errorf("kernel source tarball (apt-get install linux-source-%s): %w", PinnedSeries, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "xz", "-dc", tarball)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Version{}, fmt.Errorf("xz pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return Version{}, fmt.Errorf("start xz: %w", err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait() // killed on purpose once the Makefile is found
	}()
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return Version{}, fmt.Errorf("%s: %w: no top-level Makefile", tarball, ErrNoVersion)
		}
		if err != nil {
			return Version{}, fmt.Errorf("read %s: %w", tarball, err)
		}
		name := strings.TrimPrefix(path.Clean(h.Name), "./")
		if dir, file := path.Split(name); file == "Makefile" && strings.Count(dir, "/") == 1 {
			v, err := ParseMakefileVersion(io.LimitReader(tr, 64*1024))
			if err != nil {
				return Version{}, fmt.Errorf("%s: %w", tarball, err)
			}
			return v, nil
		}
	}
}

const extractedMarker = ".sandbox-guest-extracted"

// Extract unpacks the tarball once into cacheDir/src/linux-<version> and
// returns that directory. A marker written after a complete extraction makes
// later calls return immediately; a partial extraction is never reused.
func Extract(ctx context.Context, tarball string, v Version, cacheDir string) (dir string, hit bool, err error) {
	srcRoot := filepath.Join(cacheDir, "src")
	dir = filepath.Join(srcRoot, "linux-"+v.String())
	if _, err := os.Stat(filepath.Join(dir, extractedMarker)); err == nil {
		return dir, true, nil
	}
	if err := os.MkdirAll(srcRoot, 0o755); err != nil {
		return "", false, fmt.Errorf("create source cache: %w", err)
	}
	tmp, err := os.MkdirTemp(srcRoot, ".extract-")
	if err != nil {
		return "", false, fmt.Errorf("create extraction dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	// MkdirTemp creates 0700; the cache is shared with other users.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", false, fmt.Errorf("extraction dir: %w", err)
	}
	cmd := exec.CommandContext(ctx, "tar", "-xJf", tarball, "-C", tmp, "--strip-components=1", "--no-same-owner")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("extract %s: %w\n%s", tarball, err, out)
	}
	mf, err := os.Open(filepath.Join(tmp, "Makefile"))
	if err != nil {
		return "", false, fmt.Errorf("extracted source has no Makefile: %w", err)
	}
	got, err := ParseMakefileVersion(mf)
	mf.Close()
	if err != nil {
		return "", false, fmt.Errorf("extracted source: %w", err)
	}
	if got != v {
		return "", false, fmt.Errorf("extracted source is %s, expected %s", got, v)
	}
	if err := os.WriteFile(filepath.Join(tmp, extractedMarker), []byte(tarball+"\n"), 0o644); err != nil {
		return "", false, fmt.Errorf("mark extraction complete: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil { // an unmarked, partial tree
		return "", false, fmt.Errorf("remove partial source tree: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", false, fmt.Errorf("move extracted source into place: %w", err)
	}
	return dir, false, nil
}
