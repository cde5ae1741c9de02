# wapper-cloud (issue 8): the Kubernetes controller and the cloud ↔ edge
# link. make build builds bin/wapper-cloud (the e2e tests run it as a real
# process); make bench connects 1,000 simulated hosts to one wapper-cloud.
BENCH_STEPS += bench-cloud

.PHONY: bench-cloud

# BENCH_CLOUD_HOSTS and BENCH_CLOUD_DEVICES override the defaults.
bench-cloud: build k8s-bins
	$(call bench_save,$(GO) run ./cloud/internal/cloudbench $(if $(BENCH_CLOUD_HOSTS),-hosts $(BENCH_CLOUD_HOSTS)) $(if $(BENCH_CLOUD_DEVICES),-devices $(BENCH_CLOUD_DEVICES)),cloud.txt)

BENCH_STEPS += bench-reconnect

.PHONY: bench-reconnect

# The reconnect curve (issue 19): 10,000 simulated hosts reconnecting with
# wapper-host's policy (internal/backoff) when the wapper-cloud replica
# they are on stops with another one up, then when the cloud restarts
# (cloudbench -reconnect; a few minutes on 2 cores). BENCH_RECONNECT_HOSTS
# overrides the number of hosts.
bench-reconnect: build k8s-bins
	$(call bench_save,$(GO) run ./cloud/internal/cloudbench -reconnect $(if $(BENCH_RECONNECT_HOSTS),-hosts $(BENCH_RECONNECT_HOSTS)),reconnect.txt)

BENCH_STEPS += bench-link-bytes

.PHONY: bench-link-bytes

# Bytes on the link (issue 19): what the initial sync, twin reports,
# desired changes and reconnects after a partition put on the wire, against
# the size of the same objects whole, without and with permessage-deflate
# (hack/bench-link-bytes: real kube-apiserver, wapper-cloud in process,
# real host links; 5 hosts x 100 devices, about 2 minutes on 2 cores).
# BENCH_LINK_HOSTS and BENCH_LINK_DEVICES (per host) override the defaults.
bench-link-bytes: k8s-bins
	$(call bench_save,$(GO) run ./hack/bench-link-bytes $(if $(BENCH_LINK_HOSTS),-hosts $(BENCH_LINK_HOSTS)) $(if $(BENCH_LINK_DEVICES),-devices $(BENCH_LINK_DEVICES)),link-bytes.txt)
