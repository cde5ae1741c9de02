# KubeEdge DMI bridge (issue 5): host/dmi, its stand-in edgecore
# (host/dmi/dmitest) and the e2e run of bin/wapper-host --dmi. `make test`
# runs them all through `go test ./...`; `make dmi-test` runs only them.
.PHONY: dmi-test

dmi-test: build plugins
	$(GO) test -count=1 ./host/dmi/...
	$(GO) test -count=1 -run 'DMI' -v ./e2e/ 2>&1 | grep -E '^(---|ok|FAIL|PASS)'
