# wapper-host (issue 3): the standalone edge host.
# make bench also runs the host benchmark: 1,000, 10,000 and 50,000
# virtual devices, standalone and over DMI, against a native Go program
# doing the same observable work (hack/bench-host); BENCH_HOST_FLAGS adds
# flags (for example -devices 1000,10000 -modes standalone).
BENCH_STEPS += bench-host

.PHONY: bench-host
bench-host: build plugins
	$(call bench_save,$(GO) run ./hack/bench-host -out $(BENCH_OUT) $(BENCH_HOST_FLAGS),host.txt)
