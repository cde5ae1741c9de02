# The device console (host/console) and the fleet console (cloud/console):
# their browser tests (e2e/console_test.go, e2e/fleet_console_test.go)
# drive Debian's chromium (hack/deps.sh installs it) headless with
# playwright-core from npm, installed into ~/.cache/wapper by
# hack/console/ensure-playwright.sh (needs Node.js 20 or later with npm).
# Screenshots go to bin/test-output/{console,fleet} (or under $WAPPER_TEST_OUTPUT).

TEST_PREREQS += console-peer

.PHONY: console-peer console-test

# Cold: an npm install of about 14 MB, seconds; warm: instant.
console-peer:
	@hack/console/ensure-playwright.sh >/dev/null

# Only the consoles' tests: their packages, then in chromium through
# wapper-host, and through wapper-cloud on a real kube-apiserver.
console-test: deps build plugins console-peer k8s-bins
	$(GO) test -count=1 ./host/console ./cloud/console
	$(GO) test -count=1 -run 'TestConsole|TestCloudConsole' ./e2e
