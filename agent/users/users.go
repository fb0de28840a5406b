// Package users resolves a process's user by name against the container's
// own /etc/passwd and /etc/group, read inside its rootfs as if that were
// "/" (symlinks and ".." cannot lead out of it).
//
// The upstream Kata agent uses only the numeric uid and gid; a string
// user (Process.user.username) is accepted here in the forms the OCI
// tools accept: "name", "name:group", "uid", "uid:gid" (and the mixed
// "name:gid", "uid:group"). When it is set, it decides the uid and gid;
// the request's numeric ones are replaced. Supplementary groups are the
// groups of /etc/group that list the user as a member, followed by the
// request's additional gids.
package users

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Limits on what is read: these files are the container image's, which
// may be hostile.
const (
	// MaxFileSize bounds /etc/passwd and /etc/group.
	MaxFileSize = 4 << 20
	// MaxLineLen bounds one line of either.
	MaxLineLen = 64 << 10
	// MaxUsernameLen bounds the user string of a request.
	MaxUsernameLen = 256
	// MaxGroups is the kernel's NGROUPS_MAX.
	MaxGroups = 65536
)

// passwdEntry is what is needed of one /etc/passwd line.
type passwdEntry struct {
	name     string
	uid, gid uint32
}

// groupEntry is what is needed of one /etc/group line.
type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// spec is a parsed user string.
type spec struct {
	user, group string // names, "" when numeric or absent
	uid, gid    uint32
	uidSet      bool // user was numeric
	gidSet      bool // group was numeric
	hasGroup    bool
}

// parseSpec splits "user[:group]" and tells numbers from names.
func parseSpec(s string) (spec, error) {
	if len(s) > MaxUsernameLen {
		return spec{}, fmt.Errorf("user %.32q...: longer than %d bytes: %w", s, MaxUsernameLen, errdefs.ErrInvalidArgument)
	}
	if strings.ContainsAny(s, "\x00\n") {
		return spec{}, fmt.Errorf("user %q contains a NUL or newline: %w", s, errdefs.ErrInvalidArgument)
	}
	u, g, hasGroup := strings.Cut(s, ":")
	if u == "" || (hasGroup && (g == "" || strings.Contains(g, ":"))) {
		return spec{}, fmt.Errorf("user %q: want name, name:group, uid or uid:gid: %w", s, errdefs.ErrInvalidArgument)
	}
	var sp spec
	sp.hasGroup = hasGroup
	if n, ok, err := number(u); err != nil {
		return spec{}, fmt.Errorf("user %q: uid: %w", s, err)
	} else if ok {
		sp.uid, sp.uidSet = n, true
	} else {
		sp.user = u
	}
	if hasGroup {
		if n, ok, err := number(g); err != nil {
			return spec{}, fmt.Errorf("user %q: gid: %w", s, err)
		} else if ok {
			sp.gid, sp.gidSet = n, true
		} else {
			sp.group = g
		}
	}
	return sp, nil
}

// number parses a decimal id; ok is false for a name (anything that is
// not all digits).
func number(s string) (n uint32, ok bool, err error) {
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false, nil
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, false, fmt.Errorf("%q is not a 32-bit id: %w", s, errdefs.ErrInvalidArgument)
	}
	return uint32(v), true, nil
}

// scanLines calls fn with each line of r that is not blank or a comment,
// and its number; r is at most MaxFileSize bytes, lines MaxLineLen.
func scanLines(file string, r io.Reader, fn func(n int, fields []string) error) error {
	sc := bufio.NewScanner(io.LimitReader(r, MaxFileSize+1))
	sc.Buffer(make([]byte, 0, 4096), MaxLineLen)
	read, n := 0, 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		read += len(line) + 1
		if read > MaxFileSize+1 {
			return fmt.Errorf("%s: larger than %d bytes: %w", file, MaxFileSize, errdefs.ErrInvalidArgument)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if err := fn(n, strings.Split(string(line), ":")); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s: line %d is longer than %d bytes: %w", file, n+1, MaxLineLen, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// findPasswd returns the passwd entry matching name (or uid when name is
// ""); found is false when there is none. A malformed line is skipped
// unless it is the one asked for, which is an error.
func findPasswd(file string, r io.Reader, name string, uid uint32) (e passwdEntry, found bool, err error) {
	err = scanLines(file, r, func(n int, f []string) error {
		if found {
			return nil
		}
		if name != "" && f[0] != name {
			return nil
		}
		if len(f) < 4 {
			if name != "" {
				return fmt.Errorf("%s: line %d for user %q has %d fields, want 7: %w", file, n, name, len(f), errdefs.ErrInvalidArgument)
			}
			return nil
		}
		u, uok, uerr := number(f[2])
		g, gok, gerr := number(f[3])
		if !uok || !gok || uerr != nil || gerr != nil {
			if name != "" {
				return fmt.Errorf("%s: line %d for user %q: bad uid %q or gid %q: %w", file, n, name, f[2], f[3], errdefs.ErrInvalidArgument)
			}
			return nil
		}
		if name == "" && u != uid {
			return nil
		}
		e, found = passwdEntry{name: f[0], uid: u, gid: g}, true
		return nil
	})
	return e, found, err
}

// readGroups returns the well-formed entries of /etc/group (malformed
// lines are skipped: they cannot be matched to anything).
func readGroups(file string, r io.Reader) ([]groupEntry, error) {
	var out []groupEntry
	err := scanLines(file, r, func(_ int, f []string) error {
		if len(f) < 3 {
			return nil
		}
		g, ok, err := number(f[2])
		if !ok || err != nil {
			return nil
		}
		e := groupEntry{name: f[0], gid: g}
		if len(f) > 3 && f[3] != "" {
			e.members = strings.Split(f[3], ",")
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// supplementary returns the gids of the groups that list user, then
// extra, without repeats.
func supplementary(groups []groupEntry, user string, extra []uint32) ([]uint32, error) {
	var out []uint32
	seen := map[uint32]bool{}
	add := func(g uint32) {
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	if user != "" {
		for _, g := range groups {
			if slices.Contains(g.members, user) {
				add(g.gid)
			}
		}
	}
	for _, g := range extra {
		add(g)
	}
	if len(out) > MaxGroups {
		return nil, fmt.Errorf("user %q: %d supplementary groups, more than %d: %w", user, len(out), MaxGroups, errdefs.ErrInvalidArgument)
	}
	return out, nil
}
