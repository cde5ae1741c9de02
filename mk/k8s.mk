# Kubernetes: a real kube-apiserver and etcd for the cloud tests, built from
# the Go module proxy and cached under ~/.cache (hack/k8s/ensure-k8s-bins.sh),
# and the CRDs in deploy/crds (hack/k8s/gen-crds.sh).

TEST_PREREQS += k8s-bins

K8S_RUN ?= bin/k8s-run

.PHONY: k8s-bins crds k8s-up k8s-down

# Cold: about 7 minutes on 2 cores; warm: instant.
k8s-bins:
	@hack/k8s/ensure-k8s-bins.sh >/dev/null

# Regenerate deploy/crds and the MapperPlugin deepcopy code.
crds:
	hack/k8s/gen-crds.sh

# A local cluster for development: make k8s-up, then
# export KUBECONFIG=$(K8S_RUN)/kubeconfig; make k8s-down stops it.
k8s-up: k8s-bins
	hack/k8s/start-cluster.sh $(K8S_RUN)
	$(GO) run ./hack/k8s/applycrds --kubeconfig $(K8S_RUN)/kubeconfig

k8s-down:
	hack/k8s/stop-cluster.sh $(K8S_RUN)
