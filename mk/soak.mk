# Soak: the long variants of the release soaks. `make test` runs short ones
# (tests/integration/soak_test.go on the host, TestE2E/ExecReleaseSoak in
# QEMU); these run many more execs and containers.
SOAK_N ?= 500
E2E_SOAK_N ?= 200
# The cycle soaks (soak_cycles_test.go): exec cycles in one container, then
# containers in concurrent batches of 10.
SOAK_CYCLES ?= 10000
SOAK_CONTAINERS ?= 100
E2E_SOAK_CYCLES ?= 1000
E2E_SOAK_CONTAINERS ?= 100

.PHONY: soak
soak: image
	SANDBOX_SOAK=$(SOAK_N) SANDBOX_SOAK_CYCLES=$(SOAK_CYCLES) SANDBOX_SOAK_CONTAINERS=$(SOAK_CONTAINERS) CGO_ENABLED=1 $(GO) test -count=1 -tags '$(AGENT_TAGS)' -timeout 60m -v -run 'TestSoak' ./tests/integration/
	E2E_SOAK=$(E2E_SOAK_N) E2E_SOAK_CYCLES=$(E2E_SOAK_CYCLES) E2E_SOAK_CONTAINERS=$(E2E_SOAK_CONTAINERS) E2E_REQUIRE=1 E2E_IMAGE_DIR=$(E2E_IMAGE_DIR) $(GO) test -count=1 -tags e2e -timeout 120m -v \
		-run 'TestE2E/(HealthCheck|CreateSandbox|ExecReleaseSoak|SoakCycles|DestroySandboxPowersOff)$$' ./tests/e2e/

# Faults (tests/e2e/faults_test.go): connection drop and fork bomb on the
# shared guest; memory hog, virtiofsd killed and QEMU killed each in a VM
# of their own. `make e2e` runs them too; this runs only them.
.PHONY: faults
faults: image
	E2E_REQUIRE=1 E2E_IMAGE_DIR=$(E2E_IMAGE_DIR) $(GO) test -count=1 -tags e2e -timeout 30m -v \
		-run 'TestFault|TestE2E/(HealthCheck|CreateSandbox|Fault.*)$$' ./tests/e2e/
