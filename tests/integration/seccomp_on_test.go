//go:build seccomp

package integration

const seccompBuilt = true
