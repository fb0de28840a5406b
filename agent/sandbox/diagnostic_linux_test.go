package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestTerminationLogSource(t *testing.T) {
	mounts := []specs.Mount{
		{Destination: "/proc", Source: "proc", Type: "proc"},
		{Destination: "/dev/termination-log", Source: "/run/kata-containers/shared/containers/c-1-termination-log", Type: "bind"},
		{Destination: "/tmp/msg", Source: "/run/kata-containers/shared/containers/c-2-msg", Type: "bind"},
		{Destination: "/rel", Source: "relative/file", Type: "bind"},
	}
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		mounts      []specs.Mount
		want        string
	}{
		{"default path", nil, mounts, "/run/kata-containers/shared/containers/c-1-termination-log"},
		{"annotation", map[string]string{TerminationMessagePathAnnotation: "/tmp/msg"}, mounts, "/run/kata-containers/shared/containers/c-2-msg"},
		{"annotation not clean", map[string]string{TerminationMessagePathAnnotation: "/tmp//msg/"}, mounts, "/run/kata-containers/shared/containers/c-2-msg"},
		{"annotation without mount", map[string]string{TerminationMessagePathAnnotation: "/var/msg"}, mounts, ""},
		{"relative source", map[string]string{TerminationMessagePathAnnotation: "/rel"}, mounts, ""},
		{"no mounts", nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := terminationLogSource(&specs.Spec{Annotations: tc.annotations, Mounts: tc.mounts})
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadTerminationLog(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	if got, err := readTerminationLog(write("msg", "bye: exit 3\n")); err != nil || got != "bye: exit 3\n" {
		t.Errorf("plain message: %q, %v", got, err)
	}
	if got, err := readTerminationLog(write("empty", "")); err != nil || got != "" {
		t.Errorf("empty file: %q, %v", got, err)
	}
	// Never written: an empty message, not an error.
	if got, err := readTerminationLog(filepath.Join(dir, "missing")); err != nil || got != "" {
		t.Errorf("missing file: %q, %v", got, err)
	}
	// Bounded at 4 KiB.
	big := strings.Repeat("a", 3*MaxTerminationMessage)
	if got, err := readTerminationLog(write("big", big)); err != nil || got != big[:MaxTerminationMessage] {
		t.Errorf("big file: %d bytes, %v", len(got), err)
	}
	// A multi-byte character cut by the bound, and bytes that are not
	// UTF-8, come back as replacement characters (protobuf strings must be
	// UTF-8).
	cut := strings.Repeat("a", MaxTerminationMessage-1) + "é"
	if got, err := readTerminationLog(write("cut", cut)); err != nil || got != strings.Repeat("a", MaxTerminationMessage-1)+"\uFFFD" {
		t.Errorf("cut character: %q, %v", got[MaxTerminationMessage-4:], err)
	}
	if got, err := readTerminationLog(write("binary", "ok\xff\xfeend")); err != nil || got != "ok\uFFFDend" {
		t.Errorf("binary: %q, %v", got, err)
	}

	// A symbolic link is refused rather than followed.
	secret := write("secret", "root:x:0:0")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	if got, err := readTerminationLog(link); !errors.Is(err, errdefs.ErrFailedPrecondition) || got != "" {
		t.Errorf("symlink: %q, %v", got, err)
	}
	// A directory or a FIFO is refused, and a FIFO with no writer does not
	// block the call.
	if _, err := readTerminationLog(dir); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("directory: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := readTerminationLog(fifo); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("fifo: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
}

func TestTerminationLogUnknownContainer(t *testing.T) {
	dir := t.TempDir()
	s := newTestSandbox(t, Config{BundleRoot: dir + "/b", SandboxDir: dir + "/s", SharedDir: dir + "/sh", StateRoot: dir + "/st"})
	if _, err := s.TerminationLog("nope"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown container: %v", err)
	}
	if _, err := s.TerminationLog("a/b"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad id: %v", err)
	}
}
