package network

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// Bounds on resolv.conf content from the runtime (glibc reads at most 3
// nameservers and 6 search domains, but more is harmless; these only stop
// a hostile request from filling memory or disk).
const (
	maxResolvLines   = 64
	maxResolvLineLen = 1024
)

// ValidateResolvConfLine checks one line of resolv.conf as sent in
// CreateSandbox's dns list: a comment, an empty line, or a known keyword
// (nameserver, search, domain, options, sortlist) with well-formed values.
// Control characters (NUL, newline, ...) are refused, so a line cannot
// smuggle in another one.
func ValidateResolvConfLine(line string) error {
	if len(line) > maxResolvLineLen {
		return invalid("resolv.conf line is %d bytes, longer than %d", len(line), maxResolvLineLen)
	}
	for _, r := range line {
		if r != '\t' && (unicode.IsControl(r) || r == unicode.ReplacementChar) {
			return invalid("resolv.conf line %q contains control character %q", line, r)
		}
	}
	fields := strings.Fields(line)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], ";") {
		return nil
	}
	key, vals := fields[0], fields[1:]
	switch key {
	case "nameserver":
		if len(vals) != 1 {
			return invalid("resolv.conf line %q: nameserver takes one address", line)
		}
		if _, err := netip.ParseAddr(vals[0]); err != nil {
			return invalid("resolv.conf line %q: nameserver %q is not an IP address", line, vals[0])
		}
	case "domain", "search":
		if len(vals) == 0 || (key == "domain" && len(vals) != 1) {
			return invalid("resolv.conf line %q: %s needs %s", line, key, map[string]string{"domain": "one domain name", "search": "domain names"}[key])
		}
		for _, d := range vals {
			if !validDomain(d) {
				return invalid("resolv.conf line %q: %q is not a domain name", line, d)
			}
		}
	case "options":
		if len(vals) == 0 {
			return invalid("resolv.conf line %q: options needs at least one option", line)
		}
		for _, o := range vals {
			for _, r := range o {
				if !(r == ':' || r == '-' || r == '_' || r == '.' || (r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)))) {
					return invalid("resolv.conf line %q: option %q contains %q", line, o, r)
				}
			}
		}
	case "sortlist":
		if len(vals) == 0 {
			return invalid("resolv.conf line %q: sortlist needs address/netmask pairs", line)
		}
		for _, v := range vals {
			addr, mask, _ := strings.Cut(v, "/")
			if _, err := netip.ParseAddr(addr); err != nil {
				return invalid("resolv.conf line %q: sortlist entry %q is not an address", line, v)
			}
			if mask != "" {
				if _, err := netip.ParseAddr(mask); err != nil {
					return invalid("resolv.conf line %q: sortlist netmask %q is not valid", line, mask)
				}
			}
		}
	default:
		return invalid("resolv.conf line %q: unknown keyword %q", line, key)
	}
	return nil
}

// validDomain accepts DNS names made of letters, digits, '-', '_' and
// dots, at most 253 bytes (a trailing dot is allowed).
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || (r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)))) {
				return false
			}
		}
	}
	return true
}

// WriteResolvConf validates every line and then writes them, one per
// line, to path (creating its directory). The file is replaced
// atomically; nothing is written when any line is invalid.
func WriteResolvConf(path string, lines []string) error {
	if len(lines) > maxResolvLines {
		return invalid("resolv.conf has %d lines, more than %d", len(lines), maxResolvLines)
	}
	var b strings.Builder
	for i, l := range lines {
		if err := ValidateResolvConfLine(l); err != nil {
			return fmt.Errorf("dns line %d: %w", i, err)
		}
		b.WriteString(strings.TrimSpace(l))
		b.WriteByte('\n')
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".resolv.conf-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}
