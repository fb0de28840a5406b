package device

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func statNode(path string) (NodeInfo, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return NodeInfo{}, fmt.Errorf("stat device node %s: %w", path, err)
	}
	info := NodeInfo{Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev))}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		info.Type = "b"
	case unix.S_IFCHR:
		info.Type = "c"
	default:
		return NodeInfo{}, fmt.Errorf("%s is not a device node", path)
	}
	return info, nil
}
