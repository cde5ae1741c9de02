# wapper-host (issue 3): the standalone edge host.
# make bench also runs the host benchmark: 1,000 and 10,000 virtual devices
# against the same work driven natively in Go.
BENCH_STEPS += bench-host

.PHONY: bench-host
bench-host: build plugins
	$(GO) run ./hack/bench-host
