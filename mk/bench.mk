# make bench (issue 14): every benchmark of the repository, each saving
# what it prints in one results folder, BENCH_OUT (bench-results/<UTC
# date>, ignored by git); the last step, bench-doc, rewrites the tables of
# docs/performance.md from that folder. Each bench-* target also runs on
# its own (its output then goes to a folder of its own run).

ifndef BENCH_OUT
BENCH_OUT := bench-results/$(shell date -u +%Y-%m-%dT%H%M%S)
endif
export BENCH_OUT

# bench_save runs command $(1), printing its standard output and saving it
# as $(BENCH_OUT)/$(2); the step fails when the command does.
bench_save = @mkdir -p $(BENCH_OUT) && { ( $(1) ); echo $$? > $(BENCH_OUT)/$(2).rc; } | tee $(BENCH_OUT)/$(2) && \
	rc=$$(cat $(BENCH_OUT)/$(2).rc) && rm -f $(BENCH_OUT)/$(2).rc && exit $$rc

BENCH_STEPS += bench-go

# BENCH_GO_TIME is -benchtime for the func Benchmark* functions: short,
# so that all of them take a few minutes on two cores.
BENCH_GO_TIME ?= 200ms

.PHONY: bench-go bench-doc

# Every package of the main module with a func Benchmark*, and those of
# the abi and sdk-go modules; a failing benchmark fails the step after
# the others have run.
bench-go: build plugins testplugins
	$(call bench_save,rc=0; for m in . abi sdk-go; do \
		pkgs=$$(cd $$m && $(GO) list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r p d; do \
			grep -qs '^func Benchmark' $$d/*_test.go && echo $$p; done); \
		[ -z "$$pkgs" ] || (cd $$m && $(GO) test -count=1 -run '^$$' -bench . -benchmem -benchtime $(BENCH_GO_TIME) -timeout 20m $$pkgs) || rc=1; \
	done; exit $$rc,go-bench.txt)

# The tables of docs/performance.md, from the results of BENCH_OUT (by
# default the newest folder under bench-results/).
bench-doc:
	$(GO) run ./hack/benchdoc -results $(if $(filter command line environment,$(origin BENCH_OUT)),$(BENCH_OUT),$$(ls -d bench-results/*/ | tail -n 1)) -doc docs/performance.md

BENCH_STEPS += bench-upgrade

.PHONY: bench-upgrade

# The longest gap between readings across a hot upgrade of the virtual
# plugin's module, next to the gap when the host restarts instead (100
# devices at 100 ms; hack/bench-upgrade, under two minutes).
bench-upgrade: build plugins
	$(call bench_save,$(GO) run ./hack/bench-upgrade,upgrade.txt)
