# Fuzzing. Every fuzz target of the tree (a `func FuzzX(f *testing.F)` in a
# _test.go file) runs: briefly in `make test` (fuzz-short, FUZZTIME_SHORT
# each) and for FUZZTIME each in `make fuzz`. Seed corpora are committed
# under <package>/testdata/fuzz/<FuzzName>/; a crasher the fuzzer writes
# there fails `go test` from then on until fixed, so commit it with the fix.
# `go test -fuzz` takes one target per package per run, hence the loop.
#   make fuzz FUZZTIME=10m            all targets, 10 minutes each
#   make fuzz FUZZ=FuzzConnStream     only the targets matching a regexp
FUZZTIME ?= 60s
FUZZTIME_SHORT ?= 3s
FUZZ ?= .
# FUZZ_TIMEOUT bounds one target's run (go test -timeout): keep it above
# FUZZTIME.
FUZZ_TIMEOUT ?= 1h

.PHONY: fuzz fuzz-short fuzz-list
test: fuzz-short

# fuzz-list prints "package-dir FuzzName" for every target.
fuzz-list:
	@grep -rl --include='*_test.go' --exclude-dir=build --exclude-dir='.[a-z]*' '^func Fuzz[A-Za-z0-9_]*(f \*testing.F)' . | while read -r file; do \
		sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing.F).*/\1/p' "$$file" | sed "s|^|$$(dirname $$file) |"; \
	done | grep -E " ($(FUZZ))" | sort

# FUZZ_JOBS targets run at once (FUZZ_JOBS_SHORT in fuzz-short, where
# most of a run is building and starting), each with nproc/jobs fuzz
# workers: the cores stay as busy, and one target's build and start-up
# overlap another's fuzzing. fuzz-short with 21 targets: 103 s at 4, 132 s
# at 2, on two loaded cores.
FUZZ_JOBS ?= 2
FUZZ_JOBS_SHORT ?= 4

# run_fuzz fuzzes every listed target for $(1), $(2) at a time
# (scripts/fuzz-target): one
# line per target with its exec rate, the whole output of one that fails.
define run_fuzz
	@set -eo pipefail; start=$$(date +%s); \
	$(MAKE) -s --no-print-directory fuzz-list FUZZ='$(FUZZ)' | \
	GO='$(GO)' GOTAGS='$(AGENT_TAGS)' FUZZ_TIMEOUT='$(FUZZ_TIMEOUT)' FUZZ_WORKERS=$$(( ($$(nproc) + $(2) - 1) / $(2) )) \
		xargs -P $(2) -L 1 scripts/fuzz-target $(1); \
	echo "fuzz: $$($(MAKE) -s --no-print-directory fuzz-list FUZZ='$(FUZZ)' | wc -l) targets in $$(( $$(date +%s) - start ))s"
endef

fuzz:
	$(call run_fuzz,$(FUZZTIME),$(FUZZ_JOBS))

fuzz-short:
	$(call run_fuzz,$(FUZZTIME_SHORT),$(FUZZ_JOBS_SHORT))
