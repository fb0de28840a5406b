package main

import "runtime/debug"

// defaultGCPercent is the agent's GOGC unless the environment (the kernel
// command line, for PID 1) sets one. Go's minimum heap goal is 4 MiB ×
// GOGC/100: at the default 100 the agent, whose live heap settles below
// 1 MiB, grows to about 4 MiB between collections and keeps the pages.
// At 25 the goal is about 1 MiB (or 1.25 × the live heap); the extra
// collections cost little on so small a heap (measured by make bench).
const defaultGCPercent = 25

// tuneGC applies defaultGCPercent unless GOGC is set; it returns the
// percent in force.
func tuneGC(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		p := debug.SetGCPercent(100) // read the environment's value back
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}
