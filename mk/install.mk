# make install: the guest kernel and initrd where the Kata runtime keeps its
# guest assets, a configuration drop-in for its QEMU hypervisor that boots
# them, and agentctl (image-builder kata-install, image-builder/kataconfig).
#   PREFIX                 /usr by default, as Kata's own packages
#   DESTDIR                staging root for packaging
#   KATA_CONFIG_DIR        directory of the Kata configuration.toml in use; its
#                          config.d gets the drop-in (default
#                          PREFIX/share/defaults/kata-containers)
#   KATA_VIRTIOFSD         virtio_fs_daemon (default: the Kata installation's own)
#   KATA_VIRTIOFSD_LEGACY  1: that daemon is QEMU's C virtiofsd (Kata before 3.2)
# install does not build the image (a cold kernel build is long): it installs
# what `make image` built into build/guest and names what is missing.
PREFIX ?= /usr
DESTDIR ?=
KATA_CONFIG_DIR ?=
KATA_VIRTIOFSD ?=
KATA_VIRTIOFSD_LEGACY ?=
INSTALL_IMAGE_DIR ?= build/guest

.PHONY: install
install: image-builder agentctl
	$(IMAGE_BUILDER) kata-install --image-dir '$(INSTALL_IMAGE_DIR)' --prefix '$(PREFIX)' --destdir '$(DESTDIR)' \
		--config-dir '$(KATA_CONFIG_DIR)' --virtiofsd '$(KATA_VIRTIOFSD)' \
		$(if $(filter 1,$(KATA_VIRTIOFSD_LEGACY)),--virtiofsd-legacy) --agentctl $(BIN)/agentctl
