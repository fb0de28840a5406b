package vmm

import "log/slog"

// defaultVsock is the backend used when no WithVsock option is given.
// None yet: the in-process backend (host/hvsock) replaces this.
func defaultVsock(*slog.Logger) VsockListener { return nil }
