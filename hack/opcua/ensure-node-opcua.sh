#!/usr/bin/env bash
# ensure-node-opcua.sh: make sure node-opcua-server (from npm, with the
# node-opcua client it depends on) is installed in a cache folder, and print
# the folder; its node_modules is what hack/opcua/server.js needs on
# NODE_PATH. The OPC UA tests (e2e/opcua_test.go) run that server as the
# peer of plugins/opcua.
#
# A warm cache returns at once; a cold install downloads about 70 MB from
# the npm registry (under a minute). Concurrent callers wait for one install
# (flock). The install goes to a temporary folder first, so an interrupted
# one leaves no half cache.
#
# With --no-install it only prints the folder when the cache is warm, and
# exits 3 otherwise (the Go test helper uses this to find the server).
#
# Environment:
#   NODE_OPCUA_VERSION  node-opcua version (default 2.186.4)
#   NODE_OPCUA_CACHE    cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/wapper)
#
# Needs Node.js 20 or later, and npm.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cache.sh"
VERSION=${NODE_OPCUA_VERSION:-2.186.4}
CACHE=${NODE_OPCUA_CACHE:-$(cache_home)/wapper}
DEST=$CACHE/node-opcua-$VERSION

warm() {
  [ -f "$DEST/node_modules/node-opcua-server/package.json" ] &&
    [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]
}

cache_exit_if_warm "$DEST" warm
cache_check_only --no-install "${1:-}" "not installed yet: run hack/opcua/ensure-node-opcua.sh (make test runs it)"
cache_require_node "node-opcua $VERSION"
cache_lock "$CACHE" .node-opcua.lock install
cache_exit_if_warm "$DEST" warm

log "installing node-opcua-server@$VERSION into $DEST"
cache_mktemp -d "$CACHE/.node-opcua-$VERSION.XXXXXX"
tmp=$CACHE_TMP
cache_start_timer
npm_install() {
  cd "$tmp" && npm install --prefix "$tmp" --no-audit --no-fund --no-save --omit=dev \
    --loglevel=error "node-opcua-server@$VERSION" "node-opcua-client@$VERSION"
}
cache_quiet "npm install failed" npm_install
echo "$VERSION" > "$tmp/VERSION"
cache_install_dir "$tmp" "$DEST"
log "installed in $(cache_elapsed)s"
echo "$DEST"
