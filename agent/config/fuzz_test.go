package config

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzCmdline checks properties of the command line parser beyond "no
// panic" (FuzzParse): white space between options does not matter; an
// option given twice ends as given once (the last one wins, and the same
// value twice is the same value) with each malformed value reported once
// per occurrence; every error names an option present on the line; the
// values kept are in range.
func FuzzCmdline(f *testing.F) {
	f.Add("agent.log=debug agent.server_addr=vsock://-1:1024 agent.hotplug_timeout=3 cgroup_no_v1=all")
	f.Add("agent.debug_console agent.debug_console_vport=1026 agent.log_vport=0 systemd.unified_cgroup_hierarchy=0")
	f.Add("agent.memory_online_type=online_movable agent.cpu_online_on_add=y agent.passfd_listener_port=1027")
	f.Add("agent.hotplug_timeout=90m\tagent.log=\x00 agent.server_addr=unix:///run/a.sock =x agent.=")
	f.Fuzz(func(t *testing.T, s string) {
		c, errs := Parse(s)
		fields := strings.Fields(s)
		if c2, errs2 := Parse(strings.Join(fields, "  \t\n")); !reflect.DeepEqual(c, c2) || len(errs) != len(errs2) {
			t.Fatalf("white space changed the result: %+v / %+v (%d / %d errors)", c, c2, len(errs), len(errs2))
		}
		cc, errsTwice := Parse(s + " " + s)
		if !reflect.DeepEqual(c, cc) {
			t.Fatalf("the line twice differs from once:\n%+v\n%+v", c, cc)
		}
		if len(errsTwice) != 2*len(errs) {
			t.Fatalf("the line twice gave %d errors, once %d", len(errsTwice), len(errs))
		}
		keys := map[string]bool{}
		for _, fl := range fields {
			k, _, _ := strings.Cut(fl, "=")
			keys[k] = true
		}
		for _, err := range errs {
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("error %T is not an OptionError: %v", err, err)
			}
			if !keys[oe.Option] || !strings.Contains(err.Error(), oe.Option) {
				t.Fatalf("error %q names option %q, not on the line", err, oe.Option)
			}
		}
		if err := ValidateAddr(c.ServerAddr); err != nil {
			t.Fatalf("server address %q: %v", c.ServerAddr, err)
		}
		if c.HotplugTimeout <= 0 || c.HotplugTimeout > time.Hour {
			t.Fatalf("hotplug timeout %v", c.HotplugTimeout)
		}
		if c.DebugConsolePort == 0 || c.LogVport == 0xFFFFFFFF || c.PassfdListenerPort == 0xFFFFFFFF {
			t.Fatalf("port out of range: %+v", c)
		}
	})
}

// FuzzParseAddr: an address ParseAddr accepts prints back to one that
// parses to the same Addr.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"vsock://-1:1024", "vsock://3:5000", "unix:///run/a.sock", "vsock://+1:01", "unix://relative", "http://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("refusal without a message")
			}
			return
		}
		var back string
		switch a.Scheme {
		case "vsock":
			cid := strconv.FormatUint(uint64(a.CID), 10)
			if a.CID == 0xFFFFFFFF {
				cid = "-1"
			}
			back = "vsock://" + cid + ":" + strconv.FormatUint(uint64(a.Port), 10)
		case "unix":
			back = "unix://" + a.Path
		default:
			t.Fatalf("scheme %q accepted", a.Scheme)
		}
		b, err := ParseAddr(back)
		if err != nil || b != a {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, a, back, b, err)
		}
	})
}
