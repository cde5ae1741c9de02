# Fuzzing (issue 11): native Go fuzz targets for the ABI codecs (abi/), the
# host's decoding of guest results and report arguments (host/runtime),
# manifests (host/manifest), DMI conversions (host/dmi), the link protocol
# (linkproto), the SDK's decoding of host input (sdk-go) and whatever
# else defines a Fuzz function. Their seed corpora (f.Add and
# testdata/fuzz/) run in plain `go test`, so `make test` covers them.
#
# `make fuzz` finds every target with `go test -list` in the root module,
# abi and sdk-go, and fuzzes each for FUZZTIME, one after another (fuzzing
# uses every core). It fails if any target fails; a failing input is kept
# in the package's testdata/fuzz/FuzzName/ to be fixed and then committed
# as a seed. One target: `make fuzz FUZZ=FuzzParseResult FUZZTIME=5m`.
#
# FUZZMINIMIZETIME bounds how long the fuzzer shrinks each input: it
# shrinks every input that finds new code, not only failing ones, and Go's
# default of 60s each can eat a whole FUZZTIME on targets with large seeds
# (protobuf, YAML).

FUZZTIME ?= 30s
FUZZMINIMIZETIME ?= 5s
FUZZ     ?= .
FUZZ_MODULES := . abi sdk-go

.PHONY: fuzz fuzz-list

# fuzz-list prints "module package target" for every fuzz target.
fuzz-list:
	@set -o pipefail; for m in $(FUZZ_MODULES); do \
		(cd $$m && $(GO) test -list '^Fuzz' ./...) | \
		awk -v m=$$m '/^Fuzz/ { n[++k] = $$1; next } \
			/^ok/ { for (i = 1; i <= k; i++) print m, $$2, n[i]; k = 0; next } \
			/^(FAIL|panic:)/ { print "fuzz-list: " $$0 > "/dev/stderr"; bad = 1 } \
			END { exit bad }' || exit 1; \
	done

fuzz: SHELL := /bin/bash
fuzz-list: SHELL := /bin/bash
fuzz:
	@set -o pipefail; list=$$($(MAKE) --no-print-directory -s fuzz-list) || exit 1; \
	list=$$(echo "$$list" | awk '$$3 ~ /$(FUZZ)/'); \
	[ -n "$$list" ] || { echo "fuzz: no fuzz targets match '$(FUZZ)'"; exit 1; }; \
	total=$$(echo "$$list" | wc -l); i=0; failed=""; \
	while read -r m pkg name <&3; do \
		i=$$((i + 1)); \
		echo "fuzz [$$i/$$total] $$name ($$pkg) for $(FUZZTIME)"; \
		if ! (cd $$m && $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg); then \
			failed="$$failed $$pkg.$$name"; \
		fi; \
	done 3<<< "$$list"; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi; \
	echo "fuzz: all $$total targets passed"
