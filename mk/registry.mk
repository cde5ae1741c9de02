# Registry (issue 7). `make test` runs every registry test through
# `go test ./...`, the OCI conformance run included; these targets run
# parts of it on their own.
.PHONY: registry-conformance registry-test

# The official OCI distribution-spec conformance program against
# `wapper registry serve`, every workflow on; prints the pass count.
registry-conformance:
	$(GO) test -count=1 -run TestOCIConformance -v ./registry/server/ 2>&1 | grep -E 'OCI conformance:|^(ok|FAIL|--- )'

registry-test:
	$(GO) test -count=1 ./registry/...
