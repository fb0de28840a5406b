package initsys

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Module is a kernel module to load, with key=value parameters
// (CreateSandbox.kernel_modules).
type Module struct {
	Name   string
	Params []string
}

// ErrNoModuleSupport means the kernel was built without loadable modules.
var ErrNoModuleSupport = fmt.Errorf("the guest kernel has no module support (no /proc/modules): %w", errdefs.ErrFailedPrecondition)

// modprobePath is used when the image ships modprobe.
const modprobePath = "/sbin/modprobe"

// LoadModules loads each module: through modprobe when the image has it,
// otherwise straight from /lib/modules/<release> following modules.dep.
// Names and parameters are validated before anything is loaded.
func LoadModules(s Sys, mods []Module) error {
	if len(mods) == 0 {
		return nil
	}
	if s == nil {
		s = Real{}
	}
	for _, m := range mods {
		if err := validateModule(m); err != nil {
			return err
		}
	}
	if _, err := s.Lstat("/proc/modules"); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNoModuleSupport
		}
		return fmt.Errorf("check module support: %w", err)
	}
	if _, err := s.Lstat(modprobePath); err == nil {
		for _, m := range mods {
			if err := s.RunModprobe(m.Name, m.Params); err != nil {
				return fmt.Errorf("load module %s: %w", m.Name, err)
			}
		}
		return nil
	}
	rel, err := s.KernelRelease()
	if err != nil {
		return fmt.Errorf("kernel release: %w", err)
	}
	dir := filepath.Join("/lib/modules", rel)
	depData, err := s.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return fmt.Errorf("load modules: read modules.dep: %w", err)
	}
	deps := ParseModulesDep(depData)
	for _, m := range mods {
		key := ModuleKey(m.Name)
		d, ok := deps[key]
		if !ok {
			return fmt.Errorf("load module %s: not found in %s/modules.dep: %w", m.Name, dir, errdefs.ErrNotFound)
		}
		// Dependencies are listed nearest first; load the farthest first.
		for i := len(d.Deps) - 1; i >= 0; i-- {
			if err := loadFile(s, filepath.Join(dir, d.Deps[i]), ""); err != nil {
				return fmt.Errorf("load module %s: dependency %s: %w", m.Name, d.Deps[i], err)
			}
		}
		if err := loadFile(s, filepath.Join(dir, d.Path), strings.Join(m.Params, " ")); err != nil {
			return fmt.Errorf("load module %s: %w", m.Name, err)
		}
	}
	return nil
}

func loadFile(s Sys, path, params string) error {
	err := s.LoadModuleFile(path, params)
	if errors.Is(err, unix.EEXIST) {
		return nil // already loaded
	}
	return err
}

func validateModule(m Module) error {
	if m.Name == "" || len(m.Name) > 64 {
		return fmt.Errorf("kernel module name %q: length must be 1..64: %w", short(m.Name), errdefs.ErrInvalidArgument)
	}
	for _, c := range m.Name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("kernel module name %q: character %q not allowed: %w", short(m.Name), c, errdefs.ErrInvalidArgument)
		}
	}
	for _, p := range m.Params {
		k, _, _ := strings.Cut(p, "=")
		if k == "" || strings.ContainsAny(p, " \t\n\x00") || len(p) > 1024 {
			return fmt.Errorf("kernel module %s: parameter %q is not key=value without spaces: %w", m.Name, short(p), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// ModDep is one modules.dep entry: the module file and its dependencies,
// relative to /lib/modules/<release>.
type ModDep struct {
	Path string
	Deps []string
}

// ModuleKey normalises a module or file name: no directory, no .ko
// suffix, dashes as underscores (the kernel treats them alike).
func ModuleKey(name string) string {
	base := filepath.Base(name)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ParseModulesDep reads modules.dep ("path.ko: dep.ko dep2.ko" lines).
func ParseModulesDep(data []byte) map[string]ModDep {
	out := map[string]ModDep{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		path, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok || path == "" || strings.Contains(path, "..") {
			continue
		}
		d := ModDep{Path: strings.TrimSpace(path)}
		for _, dep := range strings.Fields(deps) {
			if !strings.Contains(dep, "..") {
				d.Deps = append(d.Deps, dep)
			}
		}
		out[ModuleKey(d.Path)] = d
	}
	return out
}
