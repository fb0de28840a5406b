//go:build !seccomp

package wiring

// seccompSupported: built without libseccomp; profiles cannot be applied.
const seccompSupported = false
