// Package config reads the agent's configuration from the kernel command
// line and the environment.
//
// The option names are the ones the Kata runtime passes (agent.log,
// agent.server_addr, agent.hotplug_timeout, ...). Parsing never fails as a
// whole: an unknown option is ignored, a malformed value is reported by
// name and the default is kept, because a guest that cannot start its agent
// is worse than one that starts with defaults.
package config

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/sandbox-guest/sandbox-guest/agent/hotplug"
)

// Default values, as in the upstream agent.
const (
	DefaultServerAddr       = "vsock://-1:1024"
	DefaultLogVport         = 0
	DefaultDebugConsolePort = 1026
	DefaultHotplugTimeout   = hotplug.DefaultTimeout
	// maxValueLen bounds any single option value; the kernel command line
	// itself is at most a few KiB, so anything longer is hostile.
	maxValueLen = 4096
)

// Config is the agent's configuration.
type Config struct {
	ServerAddr string
	LogLevel   slog.Level
	LogVport   uint32
	// PassfdListenerPort is the vsock port of the stream-port listener
	// (agent.passfd_listener_port); 0: stream ports are refused.
	PassfdListenerPort uint32
	DebugConsole       bool
	DebugConsolePort   uint32
	HotplugTimeout     time.Duration
	// UnifiedCgroups selects cgroup v2 only. It is true unless the command
	// line asks for v1 (systemd.unified_cgroup_hierarchy=0 with no
	// cgroup_no_v1=all).
	UnifiedCgroups bool
	// MemoryOnline is how uevent-driven onlining onlines memory blocks.
	MemoryOnline hotplug.MemoryOnlineType
	// OnlineCPUOnAdd onlines hot-added CPUs as soon as their uevent arrives.
	OnlineCPUOnAdd bool
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		ServerAddr:       DefaultServerAddr,
		LogLevel:         slog.LevelInfo,
		LogVport:         DefaultLogVport,
		DebugConsolePort: DefaultDebugConsolePort,
		HotplugTimeout:   DefaultHotplugTimeout,
		UnifiedCgroups:   true,
		MemoryOnline:     hotplug.OnlineKernel,
	}
}

// OptionError reports one option whose value could not be used.
type OptionError struct {
	Option string
	Value  string
	Reason string
}

func (e *OptionError) Error() string {
	v := e.Value
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return fmt.Sprintf("kernel command line option %s=%q: %s (default kept)", e.Option, v, e.Reason)
}

// Parse reads a kernel command line. It returns the configuration and one
// error per option that was malformed.
func Parse(cmdline string) (Config, []error) {
	c := Default()
	var errs []error
	var unifiedSet, unified, noV1All bool
	for _, field := range strings.Fields(cmdline) {
		key, value, hasValue := strings.Cut(field, "=")
		bad := func(reason string) {
			errs = append(errs, &OptionError{Option: key, Value: value, Reason: reason})
		}
		if len(value) > maxValueLen {
			if strings.HasPrefix(key, "agent.") || key == "cgroup_no_v1" || key == "systemd.unified_cgroup_hierarchy" {
				bad(fmt.Sprintf("value longer than %d bytes", maxValueLen))
			}
			continue
		}
		switch key {
		case "agent.log":
			if lvl, ok := parseLevel(value); ok {
				c.LogLevel = lvl
			} else {
				bad("unknown log level")
			}
		case "agent.server_addr":
			if err := ValidateAddr(value); err != nil {
				bad(err.Error())
			} else {
				c.ServerAddr = value
			}
		case "agent.log_vport":
			if p, err := parsePort(value); err != nil {
				bad(err.Error())
			} else {
				c.LogVport = p
			}
		case "agent.passfd_listener_port":
			if p, err := parsePort(value); err != nil {
				bad(err.Error())
			} else {
				c.PassfdListenerPort = p
			}
		case "agent.debug_console_vport":
			if p, err := parsePort(value); err != nil || p == 0 {
				bad("not a vsock port between 1 and 4294967294")
			} else {
				c.DebugConsolePort = p
			}
		case "agent.debug_console":
			if !hasValue {
				c.DebugConsole = true
			} else if b, err := parseBool(value); err != nil {
				bad(err.Error())
			} else {
				c.DebugConsole = b
			}
		case "agent.hotplug_timeout":
			if d, err := parseTimeout(value); err != nil {
				bad(err.Error())
			} else {
				c.HotplugTimeout = d
			}
		case "agent.memory_online_type":
			switch hotplug.MemoryOnlineType(value) {
			case hotplug.OnlineKernel, hotplug.OnlineMovable:
				c.MemoryOnline = hotplug.MemoryOnlineType(value)
			default:
				bad("want online or online_movable")
			}
		case "agent.cpu_online_on_add":
			if b, err := parseBool(value); err != nil {
				bad(err.Error())
			} else {
				c.OnlineCPUOnAdd = b
			}
		case "systemd.unified_cgroup_hierarchy":
			if b, err := parseBool(value); err != nil {
				bad(err.Error())
			} else {
				unifiedSet, unified = true, b
			}
		case "cgroup_no_v1":
			if value == "all" {
				noV1All = true
			}
		}
	}
	// cgroup v2 is our default; v1 only when explicitly requested and not
	// contradicted by cgroup_no_v1=all.
	if unifiedSet && !unified && !noV1All {
		c.UnifiedCgroups = false
	}
	return c, errs
}

// ApplyEnv applies the environment overrides (KATA_AGENT_SERVER_ADDR,
// KATA_AGENT_LOG_LEVEL), which win over the command line.
func (c *Config) ApplyEnv(getenv func(string) string) []error {
	var errs []error
	if v := getenv("KATA_AGENT_SERVER_ADDR"); v != "" {
		if err := ValidateAddr(v); err != nil {
			errs = append(errs, fmt.Errorf("KATA_AGENT_SERVER_ADDR=%q: %w (default kept)", v, err))
		} else {
			c.ServerAddr = v
		}
	}
	if v := getenv("KATA_AGENT_LOG_LEVEL"); v != "" {
		if lvl, ok := parseLevel(v); ok {
			c.LogLevel = lvl
		} else {
			errs = append(errs, fmt.Errorf("KATA_AGENT_LOG_LEVEL=%q: unknown log level (default kept)", v))
		}
	}
	return errs
}

func parseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "trace", "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error", "critical", "fatal", "panic":
		return slog.LevelError, true
	}
	return 0, false
}

func parsePort(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0xFFFFFFFF {
		return 0, fmt.Errorf("not a vsock port number")
	}
	return uint32(n), nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "y", "yes", "true", "on":
		return true, nil
	case "0", "n", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

// parseTimeout accepts whole seconds (the upstream form) or a Go duration.
func parseTimeout(s string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if pd, err := time.ParseDuration(s); err == nil {
		d = pd
	} else {
		return 0, fmt.Errorf("not a number of seconds")
	}
	if d <= 0 {
		return 0, fmt.Errorf("timeout must be positive")
	}
	if d > time.Hour {
		return 0, fmt.Errorf("timeout longer than one hour")
	}
	return d, nil
}
