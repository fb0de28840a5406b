# A minimal Debian bookworm userland for the end-to-end suite's DebianUserland
# test (tests/e2e/debian_test.go), built with debootstrap once and cached
# outside the tree, like the kernel. Debian package: debootstrap (scripts/install-deps).
DEBIAN_ROOTFS ?= /var/cache/sandbox-guest/debian/bookworm-minbase
DEBIAN_MIRROR ?= http://deb.debian.org/debian
export E2E_DEBIAN_ROOTFS := $(DEBIAN_ROOTFS)

.PHONY: debian-rootfs
e2e: debian-rootfs

debian-rootfs:
	@if [ -f $(DEBIAN_ROOTFS)/var/lib/dpkg/status ]; then echo "$(DEBIAN_ROOTFS): cached"; else \
		rm -rf $(DEBIAN_ROOTFS).tmp && \
		debootstrap --variant=minbase bookworm $(DEBIAN_ROOTFS).tmp $(DEBIAN_MIRROR) && \
		mv $(DEBIAN_ROOTFS).tmp $(DEBIAN_ROOTFS); fi
