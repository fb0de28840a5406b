// Package initsys does what the agent must do as a guest's PID 1: mount
// the kernel filesystems, give the system a root that allows pivot_root,
// set the hostname, bring up loopback, start the debug console, and at the
// end sync, unmount and power off. Each step that touches the system goes
// through the Sys interface, so the logic is tested without a VM; when the
// agent is not PID 1 the PID-1-only steps are skipped and everything else
// runs the same.
package initsys
