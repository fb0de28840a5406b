package safefs

import (
	"fmt"
	"os"
)

// realPath is the path the kernel reports for a handle.
func realPath(f *os.File) (string, error) {
	p, err := os.Readlink(ProcPath(f))
	if err != nil {
		return "", fmt.Errorf("read path of handle: %w", err)
	}
	return p, nil
}
