# Hostile plugins (issue 11): small hand-written WAT modules in
# abi/testdata/hostile, each a valid plugin by the ABI that attacks the
# host one way (tables, WASI sleeps, loops in _initialize, memory, stack,
# log floods, wrapped lengths, bad results and pointers, re-entrancy).
# wat2wasm (Debian's wabt, from hack/deps.sh) builds them to
# bin/testplugins/hostile/NAME.wasm; e2e/hostile_test.go runs each beside
# the healthy virtual plugin in a real bin/wapper-host, under
# `go test ./...`. `make hostile-test` runs only that suite.

WAT2WASM ?= wat2wasm
HOSTILE_WASM := $(patsubst abi/testdata/hostile/%.wat,bin/testplugins/hostile/%.wasm,$(wildcard abi/testdata/hostile/*.wat))

TEST_PREREQS += $(HOSTILE_WASM)
testplugins: $(HOSTILE_WASM)

.PHONY: hostile-plugins hostile-test
hostile-plugins: $(HOSTILE_WASM)

# The stem here is shorter than that of the Go test plugins' rule, so make
# picks this rule for bin/testplugins/hostile/*.wasm.
bin/testplugins/hostile/%.wasm: abi/testdata/hostile/%.wat
	@mkdir -p $(@D)
	$(WAT2WASM) -o $@ $<

hostile-test: build bin/plugins/virtual.wasm $(HOSTILE_WASM)
	$(GO) test -count=1 -run TestHostile -v ./e2e/
