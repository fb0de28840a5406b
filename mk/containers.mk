# Containers: the agent's libcontainer-based lifecycle and its host tests.
# The host-integration tests need root and Debian's busybox-static; they
# run the agent in-process (the test binary is also the container init),
# so they need cgo and, for seccomp profiles, the seccomp tag.
CONTAINER_PKGS := ./agent/container/... ./agent/sandbox/... ./agent/reaper/... ./agent/server/... ./tests/integration/...

.PHONY: test-containers
test-containers:
	INTEGRATION_REQUIRE=1 CGO_ENABLED=1 $(GO) test -race -count=1 -p 1 -tags '$(AGENT_TAGS)' -timeout 20m $(CONTAINER_PKGS)


