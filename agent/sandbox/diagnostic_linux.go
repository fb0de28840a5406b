package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	// TerminationMessagePathAnnotation is the container annotation in which
	// the kubelet passes the container's terminationMessagePath.
	TerminationMessagePathAnnotation = "io.kubernetes.container.terminationMessagePath"
	// DefaultTerminationMessagePath is Kubernetes' default for it.
	DefaultTerminationMessagePath = "/dev/termination-log"
	// MaxTerminationMessage is how much of the file is returned: Kubernetes
	// keeps at most 4 KiB of a termination message, and the bound keeps a
	// container from making the agent read a huge file.
	MaxTerminationMessage = 4096
)

// terminationLogSource returns the guest path of the file mounted at the
// container's termination message path (the annotation, else Kubernetes'
// default), or "" when no mount has that destination. The agent runs
// outside the container's mount namespace, so it reads the mount source.
func terminationLogSource(spec *specs.Spec) string {
	dest := DefaultTerminationMessagePath
	if p := spec.Annotations[TerminationMessagePathAnnotation]; p != "" {
		dest = p
	}
	dest = filepath.Clean(dest)
	for _, m := range spec.Mounts {
		if filepath.Clean(m.Destination) == dest && filepath.IsAbs(m.Source) {
			return filepath.Clean(m.Source)
		}
	}
	return ""
}

// rememberTerminationLog records, at creation, where the container's
// termination message will be.
func (s *Sandbox) rememberTerminationLog(id string, spec *specs.Spec) {
	if src := terminationLogSource(spec); src != "" {
		s.termLogs.Store(id, src)
	} else {
		s.termLogs.Delete(id)
	}
}

// TerminationLog returns the container's termination message, as the
// upstream agent's GetDiagnosticData "termination_log" does: at most
// MaxTerminationMessage bytes, invalid UTF-8 replaced, "" when the
// container never wrote the file.
func (s *Sandbox) TerminationLog(id string) (string, error) {
	if _, err := s.Container(id); err != nil {
		return "", err
	}
	src, ok := s.termLogs.Load(id)
	if !ok {
		return "", fmt.Errorf("container %q has no termination message mount: %w", id, errdefs.ErrFailedPrecondition)
	}
	msg, err := readTerminationLog(src.(string))
	if err != nil {
		return "", fmt.Errorf("container %q: %w", id, err)
	}
	return msg, nil
}

// readTerminationLog reads the start of a termination message file. The
// file is in a directory the host shares and the container writes it, so
// it is opened without following a final symbolic link and without
// blocking (a FIFO there must not hang the call), and must be a regular
// file.
func readTerminationLog(path string) (string, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return "", nil // nothing written: an empty message, as upstream
	case errors.Is(err, unix.ELOOP):
		return "", fmt.Errorf("termination message file %s is a symbolic link: %w", path, errdefs.ErrFailedPrecondition)
	case err != nil:
		return "", fmt.Errorf("open termination message file %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("termination message file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("termination message file %s is not a regular file (%v): %w", path, st.Mode().Type(), errdefs.ErrFailedPrecondition)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxTerminationMessage))
	if err != nil {
		return "", fmt.Errorf("read termination message file %s: %w", path, err)
	}
	// A protobuf string must be UTF-8; a cut or binary message is mended.
	return strings.ToValidUTF8(string(b), "\uFFFD"), nil
}
