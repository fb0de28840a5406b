package vmm

import (
	"bufio"
	"bytes"
	"os"
	"strings"
)

// soAcceptCon is the /proc/net/unix flag of a socket in listen().
const soAcceptCon = "00010000"

// unixListening reports whether a Unix socket bound at path is listening,
// from /proc/net/unix (so the check does not use up a connection of a
// single-connection server such as virtiofsd). ok is false when the table
// cannot be read, and the caller falls back to the file's existence.
func unixListening(procNetUnix, path string) (listening, ok bool) {
	b, err := os.ReadFile(procNetUnix)
	if err != nil {
		return false, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		f := strings.Fields(sc.Text())
		if len(f) == 8 && f[7] == path && f[3] == soAcceptCon {
			return true, true
		}
	}
	return false, true
}
