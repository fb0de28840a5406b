package container

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// Device rules (cgroup v1 devices.allow, v2 eBPF) are only applied when
	// this package registers its implementation.
	_ "github.com/opencontainers/cgroups/devices"
	// nsenter's C constructor joins the namespaces before the Go runtime
	// starts when the binary runs as a container's init.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// InitArg is the first argument libcontainer passes when it re-executes
// the agent binary as a container's init process.
const InitArg = "init"

// IsInit reports whether this process was started by libcontainer as a
// container init: the "init" argument and libcontainer's init pipe in the
// environment. The argument alone is not enough: the kernel passes stray
// command-line words to the guest's PID 1 as arguments. (The pid cannot
// tell either: a container init is PID 1 of its own pid namespace.)
func IsInit() bool {
	return len(os.Args) > 1 && os.Args[1] == InitArg && os.Getenv("_LIBCONTAINER_INITPIPE") != ""
}

// Init runs libcontainer's init; it never returns. Call it from an init
// function of the main package (and of test binaries) when IsInit().
func Init() {
	libcontainer.Init()
}
