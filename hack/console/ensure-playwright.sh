#!/usr/bin/env bash
# ensure-playwright.sh: make sure playwright-core (from npm) is installed in
# a cache folder, and print the folder; its node_modules is what
# hack/console/console-test.mjs needs on NODE_PATH. The device console's
# browser test (e2e/console_test.go) runs that script, which drives
# Debian's chromium (hack/deps.sh installs it) headless. playwright-core
# downloads no browser of its own.
#
# A warm cache returns at once; a cold install downloads about 14 MB from
# the npm registry (seconds). Concurrent callers wait for one install
# (flock). The install goes to a temporary folder first, so an interrupted
# one leaves no half cache.
#
# With --no-install it only prints the folder when the cache is warm, and
# exits 3 otherwise (the Go test helper uses this to find it).
#
# Environment:
#   PLAYWRIGHT_VERSION  playwright-core version (default 1.65.1)
#   PLAYWRIGHT_CACHE    cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/wapper)
#
# Needs Node.js 20 or later, and npm.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cache.sh"
VERSION=${PLAYWRIGHT_VERSION:-1.65.1}
CACHE=${PLAYWRIGHT_CACHE:-$(cache_home)/wapper}
DEST=$CACHE/playwright-$VERSION

warm() {
  [ -f "$DEST/node_modules/playwright-core/package.json" ] &&
    [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]
}

cache_exit_if_warm "$DEST" warm
cache_check_only --no-install "${1:-}" "not installed yet: run hack/console/ensure-playwright.sh (make test runs it)"
cache_require_node "playwright-core $VERSION"
cache_lock "$CACHE" .playwright.lock install
cache_exit_if_warm "$DEST" warm

log "installing playwright-core@$VERSION into $DEST"
cache_mktemp -d "$CACHE/.playwright-$VERSION.XXXXXX"
tmp=$CACHE_TMP
cache_start_timer
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing
# anyway; this keeps it so should that change.
npm_install() {
  cd "$tmp" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$tmp" --no-audit --no-fund --no-save \
    --omit=dev --loglevel=error "playwright-core@$VERSION"
}
cache_quiet "npm install failed" npm_install
echo "$VERSION" > "$tmp/VERSION"
cache_install_dir "$tmp" "$DEST"
log "installed in $(cache_elapsed)s"
echo "$DEST"
