//go:build !seccomp

package main

// seccompSupported: built without libseccomp; profiles cannot be applied.
const seccompSupported = false
