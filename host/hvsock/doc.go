// Package hvsock is a vhost-user-vsock device backend: QEMU's
// vhost-user-vsock-pci device hands it the guest's vsock virtqueues over a
// vhost-user Unix socket, and the backend exposes the guest's vsock ports to
// host programs through a "hybrid vsock" Unix socket, the convention of
// Firecracker and Cloud Hypervisor that Kata's hvsock:// dialer speaks.
//
// A host client connects to the hybrid socket and writes "CONNECT <port>\n";
// once the guest accepts, the backend answers "OK <host port>\n" and the
// Unix connection carries the stream. A guest connection to host CID 2 port P
// is forwarded to the Unix socket "<hybrid socket>_P", or refused with RST.
//
// The backend implements split virtqueues without indirect descriptors or
// event index, the vsock stream protocol with credit flow control, half-close
// and reset, and treats every value read from guest memory as hostile.
//
// # Goroutines and locks
//
// Backend.Serve's goroutine owns the vhost-user connection and the device
// (device_linux.go, vhostuser_linux.go): it reads front-end messages and
// applies them one at a time. The device has no mutex. Each installed kick
// eventfd has a reader goroutine that only pokes a channel. While both
// queues are set up, two processor goroutines run (txLoop: guest packets
// to the mux; rxLoop: mux packets to the guest); every message that changes ring or memory state first calls pause,
// which cancels the processors and waits for them, and then reconcile,
// which restarts them. So ring state is touched either by the message loop
// (processors stopped) or by the processors (no message being applied),
// never by both; call and err eventfds, which processors signal while
// messages replace them, are atomic pointers.
//
// The mux (mux.go, conn.go) is shared by the processors, the host side and
// the per-stream goroutines, and has one mutex, mux.mu, that guards the
// connection table and every field of every conn. Each conn's cond is on
// mux.mu. Per stream the mux runs a host reader (host bytes into
// toGuest) and a host writer (toHost bytes to the host); a
// guest-initiated stream has a dial goroutine first, a host-initiated one
// a connect timer. All of them take mux.mu only around state changes and
// release it around network I/O and dialing, so a slow host connection
// never stalls the queues. mux.wg counts them; mux.close waits for them.
// The mux pokes the rx processor through the work channel (never blocking).
//
// hostSide (host.go) runs the accept loop and one handshake goroutine per
// client reading its CONNECT line; hostSide.mu guards only the set of
// clients mid-handshake and is released before calling into the mux.
// Backend.mu guards the front-end connection, the current mux and closed
// for Close and tests.
//
// Lock order: Backend.mu and hostSide.mu are leaves, never held while
// taking another lock; mux.mu is never held while taking either, nor
// while blocking on anything but its conds. Shutdown order (Serve's
// deferred calls): host side (no new streams), device (processors and
// kick readers stopped), mux (streams dropped, their goroutines waited).
package hvsock
