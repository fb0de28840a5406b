# vhost-user-vsock backend (host side).
#   make hvsock              build bin/hvsock
#   make test-hvsock         unit tests against a simulated guest (race detector on)
#   make test-hvsock-qemu    boot a Debian 6.1 guest kernel in QEMU behind the backend
#                            (fetches linux-image-amd64 from the Debian archive once)
.PHONY: hvsock test-hvsock test-hvsock-qemu
build: hvsock
test: test-hvsock

HVSOCK_KDIR := build/hvsock-kernel

hvsock:
	$(GO) build -o $(BIN)/hvsock ./host/cmd/hvsock

test-hvsock:
	$(GO) test -race -count=1 ./host/hvsock/... ./host/cmd/hvsock/...

$(HVSOCK_KDIR)/.done:
	rm -rf $(HVSOCK_KDIR) && mkdir -p $(HVSOCK_KDIR)
	cd $(HVSOCK_KDIR) && apt-get download $$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $$2; exit}')
	dpkg-deb -x $(HVSOCK_KDIR)/linux-image-*.deb $(HVSOCK_KDIR)/root
	rm -f $(HVSOCK_KDIR)/linux-image-*.deb
	touch $@

test-hvsock-qemu: $(HVSOCK_KDIR)/.done
	HVSOCK_TEST_KERNEL=$$(ls $(CURDIR)/$(HVSOCK_KDIR)/root/boot/vmlinuz-* | head -1) \
	HVSOCK_TEST_MODULES=$(CURDIR)/$(HVSOCK_KDIR)/root/lib/modules \
	$(GO) test -count=1 -v -run TestQEMUGuest ./host/hvsock/
