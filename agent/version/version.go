// Package version holds the agent's version strings. Version is overridden
// at link time (-X) by the build.
package version

// Version is the agent's semantic version.
var Version = "0.1.0-dev"

// APIVersion is the agent API version reported by Health.Version; it follows
// the upstream Kata agent protocol revision we are compatible with.
const APIVersion = "0.0.1"
