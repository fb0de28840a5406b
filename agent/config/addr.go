package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Addr is a parsed listen address: vsock://CID:PORT or unix:///path.
type Addr struct {
	Scheme string // "vsock" or "unix"
	CID    uint32 // vsock only; -1 in the text means any (0xFFFFFFFF)
	Port   uint32 // vsock only
	Path   string // unix only
}

// ParseAddr parses a listen address.
func ParseAddr(s string) (Addr, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Addr{}, fmt.Errorf("address %q has no scheme (want vsock:// or unix://)", s)
	}
	switch scheme {
	case "vsock":
		cidStr, portStr, ok := strings.Cut(rest, ":")
		if !ok {
			return Addr{}, fmt.Errorf("vsock address %q: want vsock://CID:PORT", s)
		}
		var cid uint32
		if cidStr == "-1" {
			cid = 0xFFFFFFFF
		} else {
			n, err := strconv.ParseUint(cidStr, 10, 32)
			if err != nil {
				return Addr{}, fmt.Errorf("vsock address %q: bad CID %q", s, cidStr)
			}
			cid = uint32(n)
		}
		port, err := strconv.ParseUint(portStr, 10, 32)
		if err != nil || port == 0xFFFFFFFF {
			return Addr{}, fmt.Errorf("vsock address %q: bad port %q", s, portStr)
		}
		return Addr{Scheme: scheme, CID: cid, Port: uint32(port)}, nil
	case "unix":
		if !strings.HasPrefix(rest, "/") {
			return Addr{}, fmt.Errorf("unix address %q: path must be absolute", s)
		}
		if len(rest) > 107 {
			return Addr{}, fmt.Errorf("unix address %q: path longer than 107 bytes", s)
		}
		return Addr{Scheme: scheme, Path: rest}, nil
	}
	return Addr{}, fmt.Errorf("address %q: unsupported scheme %q (want vsock or unix)", s, scheme)
}

// ValidateAddr reports whether s is a usable listen address.
func ValidateAddr(s string) error {
	_, err := ParseAddr(s)
	return err
}
