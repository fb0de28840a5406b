package gather

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxReadMember bounds one member when reading an archive back: host logs
// are cut to Options' limit when written, so a larger member is not ours.
const maxReadMember = 64 << 20

// Read returns the members of a gather archive by their name below its top
// directory (guest-details.json, host/qemu.log, ...), as text: every member
// Write puts there is JSON or a log. Every member must lie
// below one top directory, as Write puts them; anything else is an error.
func Read(r io.Reader) (top string, members map[string]string, err error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return "", nil, fmt.Errorf("read gather archive: %w", err)
	}
	tr := tar.NewReader(zr)
	members = map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return top, members, nil
		}
		if err != nil {
			return "", nil, fmt.Errorf("read gather archive: %w", err)
		}
		dir, name, ok := strings.Cut(h.Name, "/")
		if !ok || name == "" || (top != "" && dir != top) {
			return "", nil, fmt.Errorf("read gather archive: member %q is not below one top directory", h.Name)
		}
		top = dir
		data, err := io.ReadAll(io.LimitReader(tr, maxReadMember+1))
		if err != nil {
			return "", nil, fmt.Errorf("read gather archive member %s: %w", h.Name, err)
		}
		if len(data) > maxReadMember {
			return "", nil, fmt.Errorf("read gather archive member %s: larger than %d bytes", h.Name, maxReadMember)
		}
		members[name] = string(data)
	}
}

// ReadFile is Read of the archive at path p.
func ReadFile(p string) (top string, members map[string]string, err error) {
	f, err := os.Open(p)
	if err != nil {
		return "", nil, fmt.Errorf("read gather archive: %w", err)
	}
	defer f.Close()
	return Read(f)
}
