# ABI conformance (issue 6): the Go conformance plugin
# (abi/testdata/plugins/conformance, built by the testplugins rule) and the
# Rust one (mk/rust.mk) both run the suite of host/conformance under
# `go test ./...`; `bin/wapper plugin conformance FILE.wasm` runs it on any build.
# `make bench` compares the two SDK builds in the same host runtime.

BENCH_STEPS += bench-sdk

.PHONY: conformance bench-sdk

# The suite on both SDK builds, with both reports.
conformance: testplugins
	$(GO) test -count=1 -v -run TestSDKBuilds ./host/conformance/

bench-sdk: testplugins
	$(call bench_save,hack/bench-sdk/run.sh,sdk.txt)
