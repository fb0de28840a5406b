package uevent

import (
	"errors"
	"strings"
	"testing"
)

func msg(parts ...string) []byte { return []byte(strings.Join(parts, "\x00") + "\x00") }

func TestParseBlockAdd(t *testing.T) {
	ev, err := Parse(msg("add@/devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
		"ACTION=add", "DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
		"SUBSYSTEM=block", "MAJOR=254", "MINOR=0", "DEVNAME=vda", "DEVTYPE=disk", "SEQNUM=1234"))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Action != "add" || ev.Subsystem != "block" || ev.DevName != "vda" || ev.Seqnum != 1234 ||
		ev.DevPath != "/devices/pci0000:00/0000:00:02.0/virtio1/block/vda" {
		t.Fatalf("wrong event: %+v", ev)
	}
	if ev.Env["MAJOR"] != "254" || ev.Env["DEVTYPE"] != "disk" {
		t.Fatalf("env not kept: %v", ev.Env)
	}
}

func TestParseHeaderOnlyFields(t *testing.T) {
	// The header alone is enough for action and devpath.
	ev, err := Parse(msg("online@/devices/system/memory/memory32", "SUBSYSTEM=memory"))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Action != "online" || ev.DevPath != "/devices/system/memory/memory32" || ev.Subsystem != "memory" {
		t.Fatalf("wrong event: %+v", ev)
	}
}

func TestParseValueWithEquals(t *testing.T) {
	ev, err := Parse(msg("change@/devices/x", "ACTION=change", "DEVPATH=/devices/x", "FOO=a=b"))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Env["FOO"] != "a=b" {
		t.Fatalf("FOO = %q", ev.Env["FOO"])
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string][]byte{
		"empty":           nil,
		"udev":            []byte("libudev\x00\xfe\xed\xca\xfe"),
		"no at":           msg("add/devices/x"),
		"relative path":   msg("add@devices/x"),
		"empty action":    msg("@/devices/x"),
		"bad var":         msg("add@/devices/x", "NOEQUALS"),
		"empty key":       msg("add@/devices/x", "=v"),
		"bad seqnum":      msg("add@/devices/x", "SEQNUM=12a"),
		"header mismatch": msg("add@/devices/x", "ACTION=remove"),
		"path mismatch":   msg("add@/devices/x", "DEVPATH=/devices/y"),
		"too big":         append([]byte("add@/devices/x\x00A="), make([]byte, MaxMessageSize)...),
		"too many vars":   msg(append([]string{"add@/devices/x"}, repeat("K=v", maxVars+1)...)...),
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(m); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse(%q) = %v, want ErrMalformed", m, err)
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func FuzzParse(f *testing.F) {
	f.Add(msg("add@/devices/pci0000:00/0000:00:02.0/virtio1/block/vda", "ACTION=add",
		"DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio1/block/vda", "SUBSYSTEM=block", "DEVNAME=vda", "SEQNUM=7"))
	f.Add(msg("remove@/devices/system/cpu/cpu1"))
	f.Add([]byte("libudev\x00"))
	f.Add([]byte("add@/x\x00SEQNUM=99999999999999999999999\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		if ev.Action == "" || !strings.HasPrefix(ev.DevPath, "/") {
			t.Fatalf("accepted event without action or absolute devpath: %+v", ev)
		}
		if ev.Env == nil {
			t.Fatal("nil Env on success")
		}
	})
}
