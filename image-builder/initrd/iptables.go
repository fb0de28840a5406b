package initrd

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// The guest's iptables: Debian's legacy xtables tools (package iptables),
// which the agent runs for GetIPTables/SetIPTables and which containers
// with NET_ADMIN may use. One multi-call binary answers to every tool name;
// its matches and targets are shared objects it loads from XtablesLibDir at
// run time. Only the extensions that the guest kernel's x_tables modules
// back are shipped (a rule the kernel cannot load is refused either way),
// and the shared libraries come from the build host through the ELF
// dependency walk below. See docs/decisions.md ("In-guest iptables").
const (
	// XtablesMulti is the legacy multi-call binary.
	XtablesMulti = "/usr/sbin/xtables-legacy-multi"
	// XtablesLibDir is where the binary looks for its extensions (fixed at
	// its build time by Debian).
	XtablesLibDir = "/usr/lib/x86_64-linux-gnu/xtables"
)

// IPTablesTools are the names the multi-call binary answers to, linked in
// /usr/sbin of the image.
var IPTablesTools = []string{
	"iptables", "iptables-save", "iptables-restore",
	"ip6tables", "ip6tables-save", "ip6tables-restore",
	"iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore",
	"ip6tables-legacy", "ip6tables-legacy-save", "ip6tables-legacy-restore",
}

// Extension is a userspace iptables extension and the kernel option of the
// module that implements it in the guest kernel.
type Extension struct {
	File   string // in XtablesLibDir
	Kernel string // CONFIG_ option that must be y
}

// IPTablesExtensions are the extensions the image carries; each kernel
// option is requested in kernel-config/55-netfilter.conf, and the image
// builder checks it in the final config.
var IPTablesExtensions = []Extension{
	{"libxt_standard.so", "CONFIG_NETFILTER_XTABLES"}, // ACCEPT, DROP, RETURN, jumps
	{"libxt_tcp.so", "CONFIG_NETFILTER_XTABLES"},
	{"libxt_udp.so", "CONFIG_NETFILTER_XTABLES"},
	{"libipt_icmp.so", "CONFIG_IP_NF_IPTABLES"},
	{"libip6t_icmp6.so", "CONFIG_IP6_NF_IPTABLES"},
	{"libipt_REJECT.so", "CONFIG_IP_NF_TARGET_REJECT"},
	{"libip6t_REJECT.so", "CONFIG_IP6_NF_TARGET_REJECT"},
	{"libxt_mark.so", "CONFIG_NETFILTER_XT_MARK"},
	{"libxt_MARK.so", "CONFIG_NETFILTER_XT_MARK"},
	{"libxt_connmark.so", "CONFIG_NETFILTER_XT_CONNMARK"},
	{"libxt_CONNMARK.so", "CONFIG_NETFILTER_XT_CONNMARK"},
	{"libxt_SNAT.so", "CONFIG_NETFILTER_XT_NAT"},
	{"libxt_DNAT.so", "CONFIG_NETFILTER_XT_NAT"},
	{"libxt_MASQUERADE.so", "CONFIG_NETFILTER_XT_TARGET_MASQUERADE"},
	{"libxt_REDIRECT.so", "CONFIG_NETFILTER_XT_TARGET_REDIRECT"},
	{"libxt_LOG.so", "CONFIG_NETFILTER_XT_TARGET_LOG"},
	{"libxt_addrtype.so", "CONFIG_NETFILTER_XT_MATCH_ADDRTYPE"},
	{"libxt_comment.so", "CONFIG_NETFILTER_XT_MATCH_COMMENT"},
	{"libxt_conntrack.so", "CONFIG_NETFILTER_XT_MATCH_CONNTRACK"},
	{"libxt_state.so", "CONFIG_NETFILTER_XT_MATCH_STATE"},
	{"libxt_multiport.so", "CONFIG_NETFILTER_XT_MATCH_MULTIPORT"},
	{"libxt_owner.so", "CONFIG_NETFILTER_XT_MATCH_OWNER"},
	{"libxt_limit.so", "CONFIG_NETFILTER_XT_MATCH_LIMIT"},
}

// CheckIPTablesKernel reports every shipped extension whose kernel option
// value(opt) is not "y".
func CheckIPTablesKernel(value func(opt string) string) error {
	var errs []error
	for _, e := range IPTablesExtensions {
		if v := value(e.Kernel); v != "y" {
			errs = append(errs, fmt.Errorf("iptables extension %s needs %s=y in the kernel config (it is %s)", e.File, e.Kernel, v))
		}
	}
	return errors.Join(errs...)
}

// libDirs are searched for DT_NEEDED libraries, in the dynamic loader's
// order on Debian amd64 (its multiarch directories are built-in search
// paths, so the image needs no ld.so.cache).
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// iptablesFiles returns the "src:dst" entries (sources below hostRoot, "/"
// on the build host) and the symlinks that put iptables into the image.
func iptablesFiles(hostRoot string) ([]string, map[string]string, error) {
	bins := []string{XtablesMulti}
	for _, e := range IPTablesExtensions {
		bins = append(bins, path.Join(XtablesLibDir, e.File))
	}
	deps, err := elfDeps(hostRoot, bins)
	if err != nil {
		return nil, nil, fmt.Errorf("iptables: %w", err)
	}
	var files []string
	links := map[string]string{}
	// One file under two names (the loader is both the interpreter,
	// /lib64/ld-linux-x86-64.so.2, and a DT_NEEDED of libc) is stored once.
	first := map[string]string{}
	for _, p := range append(bins, deps...) {
		src, err := filepath.EvalSymlinks(filepath.Join(hostRoot, p))
		if err != nil {
			return nil, nil, fmt.Errorf("iptables: %s (Debian package iptables): %w", p, err)
		}
		if f, ok := first[src]; ok {
			links[strings.TrimPrefix(p, "/")] = f
			continue
		}
		first[src] = p
		files = append(files, src+":"+strings.TrimPrefix(p, "/"))
	}
	sort.Strings(files)
	for _, t := range IPTablesTools {
		links["usr/sbin/"+t] = XtablesMulti
	}
	return files, links, nil
}

// elfDeps walks the ELF interpreter and DT_NEEDED libraries of bins
// (absolute image paths, read below hostRoot) transitively and returns the
// image paths of everything they need, sorted. A library that cannot be
// found is an error naming it and who needs it.
func elfDeps(hostRoot string, bins []string) ([]string, error) {
	seen := map[string]bool{}
	for _, b := range bins {
		seen[b] = true
	}
	var out []string
	queue := append([]string(nil), bins...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		interp, needed, err := readELF(filepath.Join(hostRoot, p))
		if err != nil {
			return nil, err
		}
		var next []string
		if interp != "" {
			next = append(next, interp)
		}
		for _, lib := range needed {
			found, err := findLib(hostRoot, lib)
			if err != nil {
				return nil, fmt.Errorf("%s needs %s: %w", p, lib, err)
			}
			next = append(next, found)
		}
		for _, n := range next {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
				queue = append(queue, n)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func readELF(p string) (interp string, needed []string, err error) {
	f, err := elf.Open(p)
	if err != nil {
		return "", nil, fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return "", nil, fmt.Errorf("read ELF interpreter of %s: %w", p, err)
		}
		interp = strings.TrimRight(string(b), "\x00")
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("read DT_NEEDED of %s: %w", p, err)
	}
	return interp, needed, nil
}

func findLib(hostRoot, name string) (string, error) {
	if strings.Contains(name, "/") {
		return "", fmt.Errorf("library name %q has a path", name)
	}
	for _, d := range libDirs {
		p := path.Join(d, name)
		if _, err := os.Stat(filepath.Join(hostRoot, p)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %v: %w", libDirs, os.ErrNotExist)
}
