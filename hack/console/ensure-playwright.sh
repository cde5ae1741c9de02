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
VERSION=${PLAYWRIGHT_VERSION:-1.65.1}
CACHE=${PLAYWRIGHT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wapper}
DEST=$CACHE/playwright-$VERSION

log() { echo "[ensure-playwright] $*" >&2; }

warm() {
  [ -f "$DEST/node_modules/playwright-core/package.json" ] &&
    [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]
}

if warm; then echo "$DEST"; exit 0; fi
if [ "${1:-}" = --no-install ]; then
  log "not installed yet: run hack/console/ensure-playwright.sh (make test runs it)"
  exit 3
fi
for tool in node npm; do
  command -v "$tool" >/dev/null || { log "$tool is missing: install Node.js 20 or later, with npm"; exit 1; }
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  log "node $(node --version) is too old for playwright-core $VERSION: install Node.js 20 or later"
  exit 1
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.playwright.lock"
if ! flock -n 9; then
  log "another install is running; waiting for it"
  flock 9
fi
if warm; then echo "$DEST"; exit 0; fi

log "installing playwright-core@$VERSION into $DEST"
tmp=$(mktemp -d "$CACHE/.playwright-$VERSION.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing
# anyway; this keeps it so should that change.
if ! out=$(cd "$tmp" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$tmp" --no-audit --no-fund --no-save \
  --omit=dev --loglevel=error "playwright-core@$VERSION" 2>&1); then
  printf '%s\n' "$out" >&2
  log "npm install failed"
  exit 1
fi
echo "$VERSION" > "$tmp/VERSION"
rm -rf "$DEST"
mv "$tmp" "$DEST"
trap - EXIT
log "installed in $((SECONDS - start))s"
echo "$DEST"
