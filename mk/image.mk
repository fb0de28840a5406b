# Guest image: kernel (cached under /var/cache/sandbox-guest), initrd and manifest in build/guest/.
# IMAGE_FLAGS passes extra flags to "image-builder image" (e.g. IMAGE_FLAGS=--debug).
IMAGE_BUILDER := $(BIN)/image-builder
IMAGE_FLAGS ?=

.PHONY: image image-builder image-boot-check image-boot-agent

image-builder:
	$(GO) build -o $(IMAGE_BUILDER) ./image-builder/cmd/image-builder

# The agent comes from the "agent" target (bin/kata-agent, static, GOFIPS140=v1.0.0).
image: agent image-builder
	$(IMAGE_BUILDER) image --agent $(BIN)/kata-agent --agent-version "$(VERSION)" --out-dir build/guest $(IMAGE_FLAGS)

# Boot proof without the agent: the same kernel with a stand-in /init that
# prints the kernel's and Go's FIPS mode and powers off, booted under QEMU (TCG, q35)
# as a FIPS node boots it (the default command line plus fips=1).
image-boot-check: image-builder
	CGO_ENABLED=0 GOFIPS140=v1.0.0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/testinit ./image-builder/internal/testinit
	$(IMAGE_BUILDER) image --agent $(BIN)/testinit --out-dir build/testinit $(IMAGE_FLAGS)
	$(IMAGE_BUILDER) boot-check --kernel build/testinit/vmlinuz --initrd build/testinit/initrd.img \
		--append "$$(cat build/testinit/cmdline) fips=1" \
		--expect 'testinit: fips_enabled 1' --expect 'testinit: go fips140 true'

build: image-builder

# Boot proof with the real agent: boots build/guest with its default command line and
# waits for the agent's start-up log (FIPS mode disabled, serving on vsock); then the
# same image as a FIPS node boots it (fips=1 added: FIPS mode enabled, serving).
image-boot-agent: image
	$(IMAGE_BUILDER) boot-check --kernel build/guest/vmlinuz --initrd build/guest/initrd.img \
		--append "$$(sed 's/ quiet//' build/guest/cmdline)" --stop-on-match \
		--expect '"fips":"disabled"' --expect '"msg":"serving"'
	$(IMAGE_BUILDER) boot-check --kernel build/guest/vmlinuz --initrd build/guest/initrd.img \
		--append "$$(sed 's/ quiet//' build/guest/cmdline) fips=1" --stop-on-match \
		--expect '"fips":"enabled"' --expect '"msg":"serving"'
