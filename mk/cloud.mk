# wapper-cloud (issue 8): the Kubernetes controller and the cloud ↔ edge
# link. make build builds bin/wapper-cloud (the e2e tests run it as a real
# process); make bench connects 1,000 simulated hosts to one wapper-cloud.
BENCH_STEPS += bench-cloud

.PHONY: bench-cloud

# BENCH_CLOUD_HOSTS and BENCH_CLOUD_DEVICES override the defaults.
bench-cloud: build k8s-bins
	$(call bench_save,$(GO) run ./cloud/internal/cloudbench $(if $(BENCH_CLOUD_HOSTS),-hosts $(BENCH_CLOUD_HOSTS)) $(if $(BENCH_CLOUD_DEVICES),-devices $(BENCH_CLOUD_DEVICES)),cloud.txt)
