package network

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
)

// Bounds on resolv.conf content from the runtime. The content itself is
// written as sent, like the upstream agent does: the runtime forwards the
// pod's resolv.conf split into lines, and whatever a node's file holds
// (systemd-resolved's "search .", comments, options we do not know) is the
// resolver's business, not ours. These only stop a hostile request from
// filling memory or the sandbox directory; a real pod file is a few
// hundred bytes.
const (
	maxResolvLines = 1024
	maxResolvBytes = 64 << 10
)

// resolvConfContent turns the runtime's dns list into file content: line
// endings normalised (a CRLF file arrives with a '\r' on every line; an
// element may also carry its own breaks), each line trimmed, one '\n'
// after every line.
func resolvConfContent(lines []string) (string, error) {
	size := 0
	for _, l := range lines {
		size += len(l) + 1
	}
	if size > maxResolvBytes {
		return "", hostinput.Invalid("resolv.conf is %d bytes, more than %d", size, maxResolvBytes)
	}
	joined := strings.Join(lines, "\n")
	joined = strings.ReplaceAll(joined, "\r\n", "\n")
	joined = strings.ReplaceAll(joined, "\r", "\n")
	out := strings.Split(joined, "\n")
	for i, l := range out {
		out[i] = strings.TrimSpace(l)
	}
	// The runtime splits a file that ends in a newline into a last, empty
	// element: it ends the file, it is not one more line.
	if n := len(out); n > 0 && out[n-1] == "" {
		out = out[:n-1]
	}
	if len(out) > maxResolvLines {
		return "", hostinput.Invalid("resolv.conf has %d lines, more than %d", len(out), maxResolvLines)
	}
	if len(out) == 0 {
		return "", nil
	}
	return strings.Join(out, "\n") + "\n", nil
}

// WriteResolvConf writes the runtime's dns lines to path (creating its
// directory), normalised as resolvConfContent says. The file is replaced
// atomically; nothing is written when the content is over a limit.
func WriteResolvConf(path string, lines []string) error {
	content, err := resolvConfContent(lines)
	if err != nil {
		return err
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
	if _, err := f.WriteString(content); err != nil {
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
