# End-to-end suite and demo: boot the guest image (the `image` target,
# mk/image.mk) in QEMU with virtiofsd and the vhost-user-vsock backend.
# Debian packages: qemu-system-x86 (QEMU and /usr/lib/qemu/virtiofsd),
# busybox-static (container rootfs).
E2E_IMAGE_DIR ?= $(CURDIR)/build/guest

.PHONY: e2e demo sandbox-demo lint-e2e

test: e2e
build: sandbox-demo
lint: lint-e2e

sandbox-demo:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/sandbox-demo ./host/cmd/sandbox-demo

# E2E_REQUIRE=1: a missing image is a failure here, never a skip.
e2e: image
	E2E_REQUIRE=1 E2E_IMAGE_DIR=$(E2E_IMAGE_DIR) $(GO) test -count=1 -tags e2e -timeout 30m -v ./tests/e2e/

demo: image sandbox-demo
	$(BIN)/sandbox-demo -image $(E2E_IMAGE_DIR)

# The suite sits behind a build tag; vet it with the tag too.
lint-e2e:
	$(GO) vet -tags e2e ./tests/e2e/...
	$(GO) tool staticcheck -tags e2e ./tests/e2e/...

# bench: measured in the guest under QEMU (see tests/e2e/bench_test.go);
# BenchmarkGuestBreakdown (bench_breakdown_test.go) follows the table with
# where the guest's and the agent's memory goes, and the vCPU during a
# ReadStdout transfer.
# The lifecycle row's anchor is runc, built static from the runc version
# the agent links (go.mod), run in the same guest.
.PHONY: bench bench-runc
RUNC_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/opencontainers/runc)
bench-runc:
	CGO_ENABLED=1 GOBIN=$(CURDIR)/$(BIN)/bench $(GO) install -tags '$(AGENT_TAGS)' -ldflags '-s -w -extldflags -static' github.com/opencontainers/runc@$(RUNC_VERSION)

bench: image bench-runc
	E2E_REQUIRE=1 E2E_IMAGE_DIR=$(E2E_IMAGE_DIR) BENCH_RUNC=$(CURDIR)/$(BIN)/bench/runc BENCH_AGENT=$(CURDIR)/$(BIN)/kata-agent \
		$(GO) test -count=1 -tags e2e -run '^$$' -bench 'BenchmarkBudgets|BenchmarkGuestBreakdown' -benchtime 1x -timeout 40m ./tests/e2e/
