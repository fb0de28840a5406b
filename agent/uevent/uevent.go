// Package uevent reads kernel uevents (device add/remove/change
// notifications) from the NETLINK_KOBJECT_UEVENT socket and hands them to
// subscribers whose match function accepts them.
//
// The socket is opened on the first Subscribe, so an agent that never waits
// for a device never pays for it.
package uevent

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
)

// Event is one kernel uevent.
type Event struct {
	Action    string
	DevPath   string
	Subsystem string
	DevName   string
	Seqnum    uint64
	// Env holds every KEY=VALUE pair of the message, including the ones
	// copied into the fields above.
	Env map[string]string
}

// Limits on a message. The kernel's buffer is 2 KiB (UEVENT_BUFFER_SIZE)
// with at most 64 variables (UEVENT_NUM_ENVP); anything beyond these bounds
// did not come from the kernel.
const (
	MaxMessageSize = 8192
	maxVars        = 128
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed uevent")

// Parse decodes one kernel uevent message: a "ACTION@DEVPATH" header
// followed by NUL-separated KEY=VALUE pairs. Messages from udev (which start
// with "libudev") are refused: only the kernel's own events are trusted.
func Parse(msg []byte) (Event, error) {
	if len(msg) == 0 {
		return Event{}, fmt.Errorf("empty message: %w", ErrMalformed)
	}
	if len(msg) > MaxMessageSize {
		return Event{}, fmt.Errorf("message of %d bytes exceeds %d: %w", len(msg), MaxMessageSize, ErrMalformed)
	}
	if bytes.HasPrefix(msg, []byte("libudev")) {
		return Event{}, fmt.Errorf("udev message, not a kernel uevent: %w", ErrMalformed)
	}
	fields := bytes.Split(bytes.TrimRight(msg, "\x00"), []byte{0})
	header := string(fields[0])
	hAction, hPath, ok := strings.Cut(header, "@")
	if !ok || hAction == "" || !strings.HasPrefix(hPath, "/") {
		return Event{}, fmt.Errorf("header %q is not ACTION@/DEVPATH: %w", hostinput.Clip(header), ErrMalformed)
	}
	if len(fields)-1 > maxVars {
		return Event{}, fmt.Errorf("%d variables exceed %d: %w", len(fields)-1, maxVars, ErrMalformed)
	}
	ev := Event{Env: make(map[string]string, len(fields)-1)}
	for _, f := range fields[1:] {
		if len(f) == 0 {
			continue
		}
		k, v, ok := strings.Cut(string(f), "=")
		if !ok || k == "" {
			return Event{}, fmt.Errorf("variable %q is not KEY=VALUE: %w", hostinput.Clip(string(f)), ErrMalformed)
		}
		ev.Env[k] = v
	}
	ev.Action = ev.Env["ACTION"]
	ev.DevPath = ev.Env["DEVPATH"]
	ev.Subsystem = ev.Env["SUBSYSTEM"]
	ev.DevName = ev.Env["DEVNAME"]
	if ev.Action == "" {
		ev.Action = hAction
	}
	if ev.DevPath == "" {
		ev.DevPath = hPath
	}
	if ev.Action != hAction || ev.DevPath != hPath {
		return Event{}, fmt.Errorf("header %q disagrees with ACTION=%q DEVPATH=%q: %w",
			hostinput.Clip(header), hostinput.Clip(ev.Action), hostinput.Clip(ev.DevPath), ErrMalformed)
	}
	if s, ok := ev.Env["SEQNUM"]; ok {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return Event{}, fmt.Errorf("SEQNUM %q: %w", hostinput.Clip(s), ErrMalformed)
		}
		ev.Seqnum = n
	}
	return ev, nil
}
