package network

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sandbox", "resolv.conf")
	lines := []string{"nameserver 10.96.0.10", " search svc.cluster.local ", "options ndots:5"}
	if err := WriteResolvConf(path, lines); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, path)
	if want := "nameserver 10.96.0.10\nsearch svc.cluster.local\noptions ndots:5\n"; got != want {
		t.Errorf("content %q, want %q", got, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}

	// Over a limit: refused, and the file stays as it was.
	many := make([]string, maxResolvLines+1)
	for i := range many {
		many[i] = "# x"
	}
	err := WriteResolvConf(path, many)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "lines") {
		t.Errorf("too many lines: %v", err)
	}
	err = WriteResolvConf(path, []string{"nameserver 1.1.1.1", "# " + strings.Repeat("x", maxResolvBytes)})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("too many bytes: %v", err)
	}
	if again := readFile(t, path); again != got {
		t.Errorf("file changed by a refused write: %q", again)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}

	// No lines: an empty file (the runtime sends none when the pod has no DNS config).
	if err := WriteResolvConf(path, nil); err != nil {
		t.Fatal(err)
	}
	if b := readFile(t, path); len(b) != 0 {
		t.Errorf("content %q", b)
	}
}

// The runtime sends the pod's resolv.conf split on "\n" (kata_agent.go
// getDNS), so whatever a node's file holds arrives here: systemd-resolved's
// "search .", comments, CRLF endings, a trailing empty element. The
// upstream agent writes it as sent (each line trimmed); so do we.
func TestWriteResolvConfAsSent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
	}{
		{
			name: "systemd-resolved stub",
			lines: []string{
				"# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).",
				"# Do not edit.",
				"",
				"nameserver 127.0.0.53",
				"options edns0 trust-ad",
				"search .",
				"",
			},
			want: "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\n# Do not edit.\n\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
		},
		{
			name:  "inline comments and unknown keywords",
			lines: []string{"nameserver 10.0.0.2 # primary", "search example.com ; corp", "lookup file bind", "; old style"},
			want:  "nameserver 10.0.0.2 # primary\nsearch example.com ; corp\nlookup file bind\n; old style\n",
		},
		{
			name:  "CRLF file",
			lines: []string{"nameserver 10.0.0.2\r", "search a.example\r", ""},
			want:  "nameserver 10.0.0.2\nsearch a.example\n",
		},
		{
			name:  "line endings inside one element",
			lines: []string{"nameserver 10.0.0.2\r\nnameserver 10.0.0.3\rsearch b.example\n"},
			want:  "nameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch b.example\n",
		},
		{
			name:  "tabs and spaces",
			lines: []string{"\tnameserver\t10.0.0.2  ", "   "},
			want:  "nameserver\t10.0.0.2\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := WriteResolvConf(path, tc.lines); err != nil {
				t.Fatalf("WriteResolvConf(%q): %v", tc.lines, err)
			}
			if got := readFile(t, path); got != tc.want {
				t.Errorf("content %q, want %q", got, tc.want)
			}
		})
	}
}

// Embedded line breaks count against the line limit: one element cannot
// carry more lines than the limit allows.
func TestWriteResolvConfLineLimitCountsEmbeddedBreaks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	one := strings.Repeat("# x\n", maxResolvLines+1)
	if err := WriteResolvConf(path, []string{one}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("%d lines in one element: %v", maxResolvLines+1, err)
	}
	if err := WriteResolvConf(path, []string{strings.Repeat("# x\n", maxResolvLines)}); err != nil {
		t.Errorf("%d lines in one element: %v", maxResolvLines, err)
	}
}
