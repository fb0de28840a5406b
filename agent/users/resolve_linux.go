package users

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/safefs"
)

// Resolve returns u with the uid, gid and supplementary groups its
// Username names in the rootfs's /etc/passwd and /etc/group. Without a
// Username, u is returned as it is.
func Resolve(rootfs string, u specs.User) (specs.User, error) {
	if u.Username == "" {
		return u, nil
	}
	sp, err := parseSpec(u.Username)
	if err != nil {
		return u, err
	}
	passwdPath := filepath.Join(rootfs, "etc/passwd")
	var pw passwdEntry
	found := false
	if sp.user != "" || sp.uidSet {
		f, err := openInRoot(rootfs, "/etc/passwd")
		switch {
		case errors.Is(err, os.ErrNotExist):
			// no passwd: only numeric users resolve
		case err != nil:
			return u, err
		default:
			pw, found, err = findPasswd(passwdPath, f, sp.user, sp.uid)
			f.Close()
			if err != nil {
				return u, err
			}
		}
	}
	out := u
	switch {
	case sp.user != "" && !found:
		return u, fmt.Errorf("user %q not found in the container's /etc/passwd (%s): %w", sp.user, passwdPath, errdefs.ErrNotFound)
	case found:
		out.UID, out.GID = pw.uid, pw.gid
	default: // a numeric uid the image does not list
		out.UID, out.GID = sp.uid, 0
	}
	var groups []groupEntry
	groupPath := filepath.Join(rootfs, "etc/group")
	f, err := openInRoot(rootfs, "/etc/group")
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return u, err
	default:
		groups, err = readGroups(groupPath, f)
		f.Close()
		if err != nil {
			return u, err
		}
	}
	switch {
	case sp.gidSet:
		out.GID = sp.gid
	case sp.group != "":
		i := -1
		for j, g := range groups {
			if g.name == sp.group {
				i = j
				break
			}
		}
		if i < 0 {
			return u, fmt.Errorf("group %q of user %q not found in the container's /etc/group (%s): %w", sp.group, u.Username, groupPath, errdefs.ErrNotFound)
		}
		out.GID = groups[i].gid
	}
	name := sp.user
	if found {
		name = pw.name
	}
	if out.AdditionalGids, err = supplementary(groups, name, u.AdditionalGids); err != nil {
		return u, err
	}
	return out, nil
}

// openInRoot opens p inside rootfs for reading, resolved as if rootfs
// were "/"; only a regular file is opened (a FIFO or device would block
// or never end).
func openInRoot(rootfs, p string) (*os.File, error) {
	h, err := safefs.OpenInRoot(rootfs, filepath.Join(rootfs, p))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("container's %s: %v: %w", p, err, errdefs.ErrInvalidArgument)
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return nil, fmt.Errorf("container's %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("container's %s is not a regular file: %w", p, errdefs.ErrInvalidArgument)
	}
	if st.Size > MaxFileSize {
		return nil, fmt.Errorf("container's %s is %d bytes, larger than %d: %w", p, st.Size, MaxFileSize, errdefs.ErrInvalidArgument)
	}
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("container's %s: %w", p, err)
	}
	return f, nil
}
