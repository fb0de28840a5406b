//go:build seccomp

package main

// seccompSupported: built with libseccomp, so container seccomp profiles apply.
const seccompSupported = true
