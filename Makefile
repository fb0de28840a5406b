# sandbox-guest build. Concern-specific targets live in mk/*.mk.
SHELL := /bin/bash
GO ?= go
BIN := bin
export GOFLAGS := -buildvcs=false

VERSION ?= $(shell cat VERSION 2>/dev/null || echo 0.1.0-dev)
GOFIPS140 ?= v1.0.0
# The agent is static with cgo: libcontainer's nsenter is C, libseccomp is
# linked from Debian's libseccomp.a.
AGENT_TAGS := seccomp netgo osusergo
AGENT_LDFLAGS := -s -w -extldflags -static -X github.com/sandbox-guest/sandbox-guest/agent/version.Version=$(VERSION)

.PHONY: all deps build agent agentctl test unit test-agent integration lint protos-check
all: build

# deps installs the Debian packages and Go modules that are missing (a no-op
# when all are there), so that `make image`, `make demo` and `make test`
# work on a fresh Debian machine as root.
deps:
	@scripts/install-deps

# deps comes first wherever a target needs the toolchain or QEMU.
build: deps
image: deps
demo: deps
test: deps
build: agent agentctl

agent: | deps
	CGO_ENABLED=1 GOFIPS140=$(GOFIPS140) $(GO) build -trimpath -tags '$(AGENT_TAGS)' -ldflags '$(AGENT_LDFLAGS)' -o $(BIN)/kata-agent ./agent/cmd/kata-agent

agentctl:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/agentctl ./host/cmd/agentctl

# Test tiers:
#   unit         every package's own tests, without root, Debian packages or the
#                race detector (tests that need root skip); the quick check while coding
#   test-agent   the same packages as root, the agent's and protocols' under -race
#   integration  the host-integration tests (tests/integration): root, busybox-static,
#                the agent in-process under -race; they fail rather than skip when
#                INTEGRATION_REQUIRE=1 (set here) or CI=true
#   test         all of them, plus test-hvsock (mk/hvsock.mk) and the QEMU end-to-end
#                suite (mk/e2e.mk)
test: test-agent integration

# The agent's packages and the protocol clients run under the race
# detector: the agent serves many concurrent calls as PID 1, and a data race
# there can take the whole sandbox down. The rest of the tree runs without
# it; the hvsock backend runs once, in test-hvsock, with its own -race.
INTEGRATION_PKGS := ./tests/integration/...
HVSOCK_PKGS = $(shell $(GO) list ./host/hvsock/... ./host/cmd/hvsock/...)
ALL_PKGS = $(shell $(GO) list -tags '$(AGENT_TAGS)' ./...)
INTEG_PKGS = $(shell $(GO) list -tags '$(AGENT_TAGS)' $(INTEGRATION_PKGS))
RACE_PKGS = $(shell $(GO) list -tags '$(AGENT_TAGS)' ./agent/... ./protocols/...)
OTHER_PKGS = $(filter-out $(RACE_PKGS) $(INTEG_PKGS) $(HVSOCK_PKGS),$(ALL_PKGS))

# unit needs no libseccomp (no seccomp tag) and no root.
unit:
	$(GO) test -count=1 -tags 'netgo osusergo' $(filter-out $(INTEG_PKGS),$(shell $(GO) list ./...))

test-agent: build
	CGO_ENABLED=1 $(GO) test -race -count=1 -p 1 -tags '$(AGENT_TAGS)' -timeout 40m $(RACE_PKGS)
	CGO_ENABLED=1 $(GO) test -count=1 -p 1 -tags '$(AGENT_TAGS)' -timeout 30m $(OTHER_PKGS)

integration: build
	INTEGRATION_REQUIRE=1 CGO_ENABLED=1 $(GO) test -race -count=1 -p 1 -tags '$(AGENT_TAGS)' -timeout 40m $(INTEGRATION_PKGS)

# vet and staticcheck see the agent as it is built (its build tags);
# staticcheck is pinned in go.mod as a tool.
lint:
	$(GO) vet -tags '$(AGENT_TAGS)' ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) tool staticcheck -tags '$(AGENT_TAGS)' ./...

# protos-check fails when the committed generated code is stale.
protos-check: protos
	@if [ -n "$$(git status --porcelain -- protocols)" ]; then git status --short -- protocols; echo 'generated protocol code is stale: run make protos and commit'; exit 1; fi

include $(sort $(wildcard mk/*.mk))
