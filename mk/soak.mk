# Soak test (issue 11): many devices, healthy and faulty plugins, desired
# writes all along and kill -9 of wapper-host at random points, for
# SOAK_TIME. It reports lost and doubled desired writes (both must be
# zero), restarts, the host's RSS over time, and whether healthy devices
# still read at the end; it fails on any loss. Not part of `make test`.
# More knobs: `go run ./hack/soak -h` (SOAK_ARGS passes them on).
SOAK_TIME    ?= 10m
SOAK_DEVICES ?= 200
SOAK_ARGS    ?=

.PHONY: soak

soak: build plugins testplugins
	$(GO) run ./hack/soak -time $(SOAK_TIME) -devices $(SOAK_DEVICES) $(SOAK_ARGS)
