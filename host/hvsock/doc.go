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
package hvsock
