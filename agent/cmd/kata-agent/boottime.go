package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// envBootSteps carries the first PID 1's step times across its re-exec,
// so that the start-up log shows the whole sequence on one time base.
const envBootSteps = "SANDBOX_GUEST_BOOT_STEPS"

// bootSteps records start-up steps against CLOCK_BOOTTIME, which counts
// from the kernel's start and is the same in both processes of PID 1's
// re-exec; the first step therefore covers the kernel, the initramfs
// unpack and the Go runtime's start (with the FIPS integrity check).
type bootSteps struct {
	names []string
	at    []time.Duration
}

func sinceBoot() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// newBootSteps starts the record with the steps the first process passed
// on (and removes them from the environment), then the time to main:
// "to-main" in the first process, "reexec-to-main" (the root move, the
// exec and the Go runtime's start again) in the second. Outside PID 1 the
// first step is the host's uptime and means nothing.
func newBootSteps() *bootSteps {
	b := &bootSteps{}
	first := "to-main"
	if v := os.Getenv(envBootSteps); v != "" {
		_ = os.Unsetenv(envBootSteps)
		for _, f := range strings.Split(v, ",") {
			name, ns, ok := strings.Cut(f, "=")
			n, err := strconv.ParseInt(ns, 10, 64)
			if ok && err == nil {
				b.names, b.at = append(b.names, name), append(b.at, time.Duration(n))
			}
		}
		first = "reexec-to-main"
	}
	b.mark(first)
	return b
}

// mark records that the step named name ended now.
func (b *bootSteps) mark(name string) {
	b.names, b.at = append(b.names, name), append(b.at, sinceBoot())
}

// handOn puts the record into the environment for the re-executed agent.
func (b *bootSteps) handOn() {
	var sb strings.Builder
	for i, n := range b.names {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, "%s=%d", n, int64(b.at[i]))
	}
	_ = os.Setenv(envBootSteps, sb.String())
}

// String gives each step's duration (the first from boot) and the total.
func (b *bootSteps) String() string {
	var sb strings.Builder
	var prev time.Duration
	for i, n := range b.names {
		fmt.Fprintf(&sb, "%s=%s ", n, (b.at[i] - prev).Round(100*time.Microsecond))
		prev = b.at[i]
	}
	fmt.Fprintf(&sb, "total=%s", prev.Round(100*time.Microsecond))
	return sb.String()
}
