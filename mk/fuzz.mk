# Fuzzing. Every fuzz target of the tree (a `func FuzzX(f *testing.F)` in a
# _test.go file) runs: briefly in `make test` (fuzz-short, FUZZTIME_SHORT
# each) and for FUZZTIME each in `make fuzz`. Seed corpora are committed
# under <package>/testdata/fuzz/<FuzzName>/; a crasher the fuzzer writes
# there fails `go test` from then on until fixed, so commit it with the fix.
# `go test -fuzz` takes one target per package per run, hence the loop.
#   make fuzz FUZZTIME=10m            all targets, 10 minutes each
#   make fuzz FUZZ=FuzzConnStream     only the targets matching a regexp
FUZZTIME ?= 60s
FUZZTIME_SHORT ?= 4s
FUZZ ?= .

.PHONY: fuzz fuzz-short fuzz-list
test: fuzz-short

# fuzz-list prints "package-dir FuzzName" for every target.
fuzz-list:
	@grep -rl --include='*_test.go' --exclude-dir=build --exclude-dir='.[a-z]*' '^func Fuzz[A-Za-z0-9_]*(f \*testing.F)' . | while read -r file; do \
		sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing.F).*/\1/p' "$$file" | sed "s|^|$$(dirname $$file) |"; \
	done | grep -E " ($(FUZZ))" | sort

# FUZZ_JOBS targets run at once, each with nproc/FUZZ_JOBS fuzz workers:
# the cores stay as busy, and one target's build and start-up overlap
# another's fuzzing.
FUZZ_JOBS ?= 2

# run_fuzz fuzzes every listed target for $(1) and prints one line per
# target (its last exec rate), and the whole output of a target that fails.
define run_fuzz
	@set -eo pipefail; start=$$(date +%s); \
	$(MAKE) -s --no-print-directory fuzz-list FUZZ='$(FUZZ)' | \
	xargs -P $(FUZZ_JOBS) -L 1 bash -c 'out=$$(CGO_ENABLED=1 $(GO) test -tags "$(AGENT_TAGS)" -run "^$$" -fuzz "^$$1\$$" -fuzztime $(1) -parallel $$(( ($$(nproc) + $(FUZZ_JOBS) - 1) / $(FUZZ_JOBS) )) $$0 2>&1); rc=$$?; \
		echo "fuzz: $$0 $$1 ($(1)): $$(echo "$$out" | grep -o "execs: [0-9]* ([0-9]*/sec)" | grep -v "(0/sec)" | tail -n 1)"; \
		if [ $$rc -ne 0 ]; then echo "$$out" | grep -v "^fuzz: elapsed"; fi; exit $$rc'; \
	echo "fuzz: $$($(MAKE) -s --no-print-directory fuzz-list FUZZ='$(FUZZ)' | wc -l) targets in $$(( $$(date +%s) - start ))s"
endef

fuzz:
	$(call run_fuzz,$(FUZZTIME))

fuzz-short:
	$(call run_fuzz,$(FUZZTIME_SHORT))
