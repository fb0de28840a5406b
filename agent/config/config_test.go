package config

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guest/sandbox-guest/agent/hotplug"
)

func optionNames(errs []error) []string {
	var names []string
	for _, err := range errs {
		var oe *OptionError
		if errors.As(err, &oe) {
			names = append(names, oe.Option)
		}
	}
	return names
}

func TestParseKataOptions(t *testing.T) {
	c, errs := Parse("console=ttyS0 quiet agent.log=debug agent.log_vport=1025 agent.debug_console agent.debug_console_vport=1026 " +
		"agent.hotplug_timeout=10 agent.server_addr=vsock://-1:2048 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 fips=1 " +
		"agent.memory_online_type=online_movable agent.cpu_online_on_add=true")
	if len(errs) != 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
	want := Config{
		ServerAddr: "vsock://-1:2048", LogLevel: slog.LevelDebug, LogVport: 1025, DebugConsole: true,
		DebugConsolePort: 1026, HotplugTimeout: 10 * time.Second, UnifiedCgroups: true,
		MemoryOnline: hotplug.OnlineMovable, OnlineCPUOnAdd: true,
	}
	if c != want {
		t.Errorf("Parse = %+v\nwant     %+v", c, want)
	}
}

func TestParseDefaultsAndUnknown(t *testing.T) {
	c, errs := Parse("root=/dev/vda1 ro foo=bar agent.unknown_thing=5 agent.trace=true")
	if len(errs) != 0 {
		t.Fatalf("unknown options must be ignored, got %v", errs)
	}
	if c != Default() {
		t.Errorf("Parse = %+v, want defaults %+v", c, Default())
	}
}

func TestParseCgroupVersion(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		unified bool
	}{
		{"", true},
		{"systemd.unified_cgroup_hierarchy=0", false},
		{"systemd.unified_cgroup_hierarchy=0 cgroup_no_v1=all", true},
		{"systemd.unified_cgroup_hierarchy=1", true},
		{"systemd.unified_cgroup_hierarchy=false", false},
	} {
		c, errs := Parse(tc.cmdline)
		if len(errs) != 0 || c.UnifiedCgroups != tc.unified {
			t.Errorf("Parse(%q): unified=%v errs=%v, want unified=%v", tc.cmdline, c.UnifiedCgroups, errs, tc.unified)
		}
	}
}

func TestParseHostileInputKeepsDefaults(t *testing.T) {
	huge := strings.Repeat("9", 1<<20)
	for _, tc := range []struct {
		name    string
		cmdline string
		option  string
	}{
		{"1 MiB value", "agent.log_vport=" + huge, "agent.log_vport"},
		{"1 MiB address", "agent.server_addr=vsock://-1:" + huge, "agent.server_addr"},
		{"missing = on valued option", "agent.log_vport", "agent.log_vport"},
		{"missing = on level", "agent.log", "agent.log"},
		{"non-numeric port", "agent.log_vport=abc", "agent.log_vport"},
		{"port out of range", "agent.debug_console_vport=4294967296", "agent.debug_console_vport"},
		{"negative port", "agent.log_vport=-5", "agent.log_vport"},
		{"negative timeout", "agent.hotplug_timeout=-3", "agent.hotplug_timeout"},
		{"zero timeout", "agent.hotplug_timeout=0", "agent.hotplug_timeout"},
		{"absurd timeout", "agent.hotplug_timeout=100000", "agent.hotplug_timeout"},
		{"bad level", "agent.log=loud", "agent.log"},
		{"bad scheme", "agent.server_addr=tcp://1.2.3.4:1024", "agent.server_addr"},
		{"relative unix path", "agent.server_addr=unix://rel/sock", "agent.server_addr"},
		{"bad bool", "agent.debug_console=maybe", "agent.debug_console"},
		{"bad online type", "agent.memory_online_type=offline", "agent.memory_online_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, errs := Parse(tc.cmdline)
			names := optionNames(errs)
			if len(names) != 1 || names[0] != tc.option {
				t.Fatalf("errors %v, want exactly one naming %s", errs, tc.option)
			}
			if len(errs[0].Error()) > 512 {
				t.Errorf("error message is %d bytes; hostile values must be truncated", len(errs[0].Error()))
			}
			if c != Default() {
				t.Errorf("config changed by a bad value: %+v", c)
			}
		})
	}
}

func TestParseRepeatedKeysLastWins(t *testing.T) {
	c, errs := Parse("agent.log=debug agent.log=error agent.log_vport=1 agent.log_vport=bad")
	if c.LogLevel != slog.LevelError {
		t.Errorf("LogLevel = %v, want the last valid value (error)", c.LogLevel)
	}
	if c.LogVport != 1 {
		t.Errorf("LogVport = %d, want 1: a later bad value keeps the earlier one", c.LogVport)
	}
	if n := optionNames(errs); len(n) != 1 || n[0] != "agent.log_vport" {
		t.Errorf("errors = %v", errs)
	}
}

func TestApplyEnv(t *testing.T) {
	c := Default()
	env := map[string]string{"KATA_AGENT_SERVER_ADDR": "unix:///tmp/a.sock", "KATA_AGENT_LOG_LEVEL": "warn"}
	if errs := c.ApplyEnv(func(k string) string { return env[k] }); len(errs) != 0 {
		t.Fatal(errs)
	}
	if c.ServerAddr != "unix:///tmp/a.sock" || c.LogLevel != slog.LevelWarn {
		t.Errorf("ApplyEnv = %+v", c)
	}
	c = Default()
	env = map[string]string{"KATA_AGENT_SERVER_ADDR": "bogus", "KATA_AGENT_LOG_LEVEL": "nope"}
	if errs := c.ApplyEnv(func(k string) string { return env[k] }); len(errs) != 2 {
		t.Fatalf("want 2 errors, got %v", errs)
	}
	if c != Default() {
		t.Errorf("bad env changed config: %+v", c)
	}
}

func TestParseAddr(t *testing.T) {
	a, err := ParseAddr("vsock://-1:1024")
	if err != nil || a.CID != 0xFFFFFFFF || a.Port != 1024 || a.Scheme != "vsock" {
		t.Errorf("vsock any: %+v %v", a, err)
	}
	a, err = ParseAddr("vsock://3:5000")
	if err != nil || a.CID != 3 || a.Port != 5000 {
		t.Errorf("vsock 3: %+v %v", a, err)
	}
	a, err = ParseAddr("unix:///run/a.sock")
	if err != nil || a.Path != "/run/a.sock" {
		t.Errorf("unix: %+v %v", a, err)
	}
	for _, bad := range []string{"", "vsock", "vsock://", "vsock://x:1", "vsock://1:", "vsock://1:4294967295", "unix://", "http://x", "unix:///" + strings.Repeat("a", 200)} {
		if _, err := ParseAddr(bad); err == nil {
			t.Errorf("ParseAddr(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("agent.log=debug agent.server_addr=vsock://-1:1024 agent.hotplug_timeout=3")
	f.Add("agent.log_vport=\x00 cgroup_no_v1=all =")
	f.Fuzz(func(t *testing.T, s string) {
		c, _ := Parse(s)
		if err := ValidateAddr(c.ServerAddr); err != nil {
			t.Fatalf("Parse produced an invalid server address %q: %v", c.ServerAddr, err)
		}
		if c.HotplugTimeout <= 0 {
			t.Fatalf("non-positive hotplug timeout %v", c.HotplugTimeout)
		}
	})
}

func TestPassfdListenerPort(t *testing.T) {
	c, errs := Parse("agent.passfd_listener_port=1027")
	if len(errs) != 0 || c.PassfdListenerPort != 1027 {
		t.Fatalf("port %d, errors %v; want 1027", c.PassfdListenerPort, errs)
	}
	if _, errs := Parse("agent.passfd_listener_port=x"); len(errs) == 0 {
		t.Fatal("a bad port was accepted")
	}
}
