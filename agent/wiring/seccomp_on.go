//go:build seccomp

package wiring

// seccompSupported: built with libseccomp, so container seccomp profiles apply.
const seccompSupported = true
