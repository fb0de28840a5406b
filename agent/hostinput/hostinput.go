// Package hostinput reports bad input in one style: everything the host
// sends (and what the kernel or a container hands back) can be hostile or
// malformed, so errors about it are InvalidArgument, name the problem, and
// quote the offending value clipped to a readable length.
package hostinput

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// clipLen is how much of a value an error message quotes.
const clipLen = 64

// Invalid builds an InvalidArgument error naming the problem.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// Clip shortens s for an error message: a hostile value can be megabytes
// long.
func Clip(s string) string {
	if len(s) > clipLen {
		return s[:clipLen] + "..."
	}
	return s
}
