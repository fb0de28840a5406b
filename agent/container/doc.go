// Package container runs one container with runc's libcontainer in-process:
// create, start, exec, stdio, signals, waits, pause/resume, resources,
// stats and OOM notifications.
//
// The agent binary is also the container init: libcontainer re-executes
// /proc/self/exe with the argument "init", and the program must call Init
// from an init function before anything else runs (see init_linux.go).
//
// Stdio goes through pipes (or a pty master received over libcontainer's
// console socket) that the agent reads directly, so output a process wrote
// before exiting stays in the pipe until the host reads it; a read returns
// io.EOF once the last writer closed and everything was drained, or once
// the process exited and no more output came within a short drain window
// (a child left in the background may hold the stream for ever). When a
// finished process's stdio and entry go is described in release_linux.go.
//
// Lock order: Container.mu before Process.mu. Neither is ever held while
// blocking on a process (wait), on stdio or on libcontainer work that forks;
// blocking calls take what they need under the lock and wait without it.
package container
