# Toxiproxy (issue 19): the fault-injection e2e test (e2e/toxiproxy_test.go)
# puts a real toxiproxy-server between each wapper-host and wapper-cloud,
# built from github.com/Shopify/toxiproxy/v2 on the Go module proxy into
# ~/.cache/wapper by hack/toxiproxy/ensure-toxiproxy.sh.
TEST_PREREQS += toxiproxy-peer

.PHONY: toxiproxy-peer cloud-faults-test

# Cold: a dozen modules and about 20 s on 2 cores; warm: instant.
toxiproxy-peer:
	@hack/toxiproxy/ensure-toxiproxy.sh >/dev/null

# The fault-injection test alone (about 5 minutes on 2 cores).
cloud-faults-test: build plugins k8s-bins toxiproxy-peer
	$(GO) test -count=1 -timeout 20m -run '^TestCloudFaults$$' -v ./e2e
