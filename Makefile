# wapper: `make demo` runs the main job, `make test` runs every test.
GO        ?= go
WASMENV   := GOOS=wasip1 GOARCH=wasm
export CGO_ENABLED ?= 0

# Go plugins: every plugins/NAME (and abi/testdata/plugins/NAME) with a main.go.
GO_PLUGINS := $(patsubst plugins/%/main.go,%,$(wildcard plugins/*/main.go))
TEST_PLUGINS := $(patsubst abi/testdata/plugins/%/main.go,%,$(wildcard abi/testdata/plugins/*/main.go))
PLUGIN_WASM := $(GO_PLUGINS:%=bin/plugins/%.wasm)
TEST_WASM := $(TEST_PLUGINS:%=bin/testplugins/%.wasm)

# Component makefiles add to these. TEST_STEPS are commands of one word
# each (scripts); BENCH_STEPS are make targets.
EXTRA_PLUGINS :=
TEST_PREREQS :=
TEST_STEPS :=
BENCH_STEPS :=

include $(wildcard mk/*.mk)

.PHONY: all build plugins testplugins test bench demo deps clean lint
all: build plugins

build:
	@mkdir -p bin
	$(GO) build -o bin/ ./host/cmd/wapper-host ./registry/cmd/wapper ./cloud/cmd/wapper-cloud

plugins: $(PLUGIN_WASM) $(EXTRA_PLUGINS)

testplugins: $(TEST_WASM)

SDK_SRC := $(wildcard sdk-go/*.go abi/*.go)

.SECONDEXPANSION:
bin/plugins/%.wasm: $(SDK_SRC) $$(wildcard plugins/$$*/*.go plugins/$$*/*/*.go)
	@mkdir -p $(@D)
	$(WASMENV) $(GO) build -buildmode=c-shared -o $@ ./plugins/$*

bin/testplugins/%.wasm: $(SDK_SRC) $$(wildcard abi/testdata/plugins/$$*/*.go)
	@mkdir -p $(@D)
	cd abi/testdata/plugins && $(WASMENV) $(GO) build -buildmode=c-shared -o ../../../$@ ./$*

deps:
	@hack/deps.sh

lint:
	$(GO) vet ./...
	cd abi && $(GO) vet ./...
	cd sdk-go && $(GO) vet ./... && $(WASMENV) $(GO) vet ./...

# The host, cloud and registry packages run their tests under the race
# detector (it needs cgo; the plugins stay CGO-free). The others, and the
# stack guard (a single-threaded binary rewriter whose spec-suite tests the
# detector would only slow down), run without it.
RACE_RE := ^wapper.dev/wapper/(host|cloud|registry)(/|$$)
NO_RACE_RE := /internal/stackguard$$
RACE_PKGS = $(shell $(GO) list ./... | grep -E '$(RACE_RE)' | grep -vE '$(NO_RACE_RE)')
RACE_FREE = $(shell $(GO) list ./... | grep -vE '$(RACE_RE)'; $(GO) list ./... | grep -E '$(NO_RACE_RE)')

# Every test. Tests that need a peer fail under CI=true when it is missing.
test: deps build plugins testplugins $(TEST_PREREQS)
	cd abi && $(GO) test -count=1 ./...
	cd sdk-go && $(GO) test -count=1 ./...
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 40m $(RACE_PKGS)
	# Timing-bound (no collect cycle missed): also without the race detector.
	$(GO) test -count=1 -run '^TestHotUpgrade$$' ./host/devices
	$(GO) test -count=1 -timeout 30m $(RACE_FREE)
	$(foreach s,$(TEST_STEPS),$(s) &&) true

# Every benchmark (mk/bench.mk), saved in BENCH_OUT; then the tables of
# docs/performance.md from them, also when a step failed (the page says
# which results are missing, and make bench still fails).
bench: build plugins testplugins
	$(call bench_save,$(GO) run ./hack/bench,runtime.txt)
	$(MAKE) --no-print-directory -k $(BENCH_STEPS); rc=$$?; $(MAKE) --no-print-directory bench-doc && exit $$rc

demo: build plugins
	@echo "wapper-host device console: http://$${DEMO_HTTP:-127.0.0.1:7777}/"
	hack/demo.sh

clean:
	rm -rf bin
