// Package e2e is the end-to-end suite: it boots the guest image in QEMU
// (host/vmm) with virtiofsd and the vhost-user-vsock backend, and drives
// the pod lifecycle through the public client the way the Kata runtime
// does. The tests carry the build tag e2e; `make e2e` runs them.
//
// Environment:
//
//	E2E_IMAGE_DIR  image directory (default: build/guest at the repository root)
//	E2E_REQUIRE=1  a missing image fails instead of skipping (set by make e2e; CI=true does the same)
//	E2E_KVM=1      use KVM instead of TCG
//	E2E_APPEND     extra kernel command line arguments
//	E2E_BUSYBOX    static busybox for container rootfs (default /bin/busybox, Debian's busybox-static)
package e2e
