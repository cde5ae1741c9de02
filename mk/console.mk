# The device console (host/console): its browser test (e2e/console_test.go)
# drives Debian's chromium (hack/deps.sh installs it) headless with
# playwright-core from npm, installed into ~/.cache/wapper by
# hack/console/ensure-playwright.sh (needs Node.js 20 or later with npm).
# Screenshots go to bin/test-output/console (or $WAPPER_TEST_OUTPUT/console).

TEST_PREREQS += console-peer

.PHONY: console-peer console-test

# Cold: an npm install of about 14 MB, seconds; warm: instant.
console-peer:
	@hack/console/ensure-playwright.sh >/dev/null

# Only the console's tests: its package, then in chromium through wapper-host.
console-test: deps build plugins console-peer
	$(GO) test -count=1 ./host/console
	$(GO) test -count=1 -run 'TestConsole' ./e2e
