# KubeEdge: its own cloudcore and edgecore v1.23.1, built from the Go module
# proxy and cached under ~/.cache (hack/kubeedge/ensure-kubeedge-bins.sh),
# for the end-to-end test through real KubeEdge (e2e/kubeedge_test.go).

TEST_PREREQS += kubeedge-bins

.PHONY: kubeedge-bins

# Cold: about 10 minutes on 2 cores; warm: instant.
kubeedge-bins:
	@hack/kubeedge/ensure-kubeedge-bins.sh >/dev/null

.PHONY: kubeedge-up kubeedge-test

# A local kube-apiserver, cloudcore and edgecore until Ctrl-C (docs/kubeedge.md).
kubeedge-up: kubeedge-bins k8s-bins
	$(GO) run ./hack/kubeedge/up

# Only the end-to-end test through real KubeEdge.
kubeedge-test: build plugins kubeedge-bins k8s-bins
	$(GO) test -count=1 -run '^TestKubeEdge$$' -v ./e2e/
