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

define run_fuzz
	@set -e; n=0; start=$$(date +%s); \
	while read -r pkg name; do \
		n=$$((n+1)); \
		echo "fuzz: $$pkg $$name ($(1))"; \
		CGO_ENABLED=1 $(GO) test -tags '$(AGENT_TAGS)' -run '^$$' -fuzz "^$$name\$$" -fuzztime $(1) $$pkg 2>&1 | \
			grep -v '^fuzz: elapsed: .*(0/sec)' | tail -n 4; \
		test $${PIPESTATUS[0]} -eq 0; \
	done < <($(MAKE) -s --no-print-directory fuzz-list FUZZ='$(FUZZ)'); \
	echo "fuzz: $$n targets, $$(( $$(date +%s) - start ))s"
endef

fuzz:
	$(call run_fuzz,$(FUZZTIME))

fuzz-short:
	$(call run_fuzz,$(FUZZTIME_SHORT))
