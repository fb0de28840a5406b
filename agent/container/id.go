package container

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
)

// MaxIDLen bounds container and exec ids.
const MaxIDLen = 256

// ValidateID checks a container or exec id: 1 to 256 bytes of ASCII
// letters, digits, '_', '-', '.', '+' (libcontainer's own set), starting
// with a letter or digit, without "..". Ids become path components, so
// anything else is refused with an error naming the problem.
func ValidateID(kind, id string) error {
	bad := func(why string) error {
		return fmt.Errorf("%s %q: %s: %w", kind, hostinput.Clip(id), why, errdefs.ErrInvalidArgument)
	}
	switch {
	case id == "":
		return fmt.Errorf("%s is empty: %w", kind, errdefs.ErrInvalidArgument)
	case len(id) > MaxIDLen:
		return bad(fmt.Sprintf("id is %d bytes, longer than %d", len(id), MaxIDLen))
	case strings.ContainsRune(id, 0):
		return bad("id contains NUL")
	case strings.Contains(id, "/"):
		return bad(`id contains "/"`)
	case strings.Contains(id, ".."):
		return bad(`id contains ".."`)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return bad(fmt.Sprintf("id must start with a letter or digit, not %q", c))
		}
		if !alnum && c != '_' && c != '-' && c != '.' && c != '+' {
			return bad(fmt.Sprintf("id contains %q (allowed: letters, digits, '_', '-', '.', '+')", c))
		}
	}
	return nil
}
