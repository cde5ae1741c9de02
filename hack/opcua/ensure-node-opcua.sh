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
VERSION=${NODE_OPCUA_VERSION:-2.186.4}
CACHE=${NODE_OPCUA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wapper}
DEST=$CACHE/node-opcua-$VERSION

log() { echo "[ensure-node-opcua] $*" >&2; }

warm() {
  [ -f "$DEST/node_modules/node-opcua-server/package.json" ] &&
    [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]
}

if warm; then echo "$DEST"; exit 0; fi
if [ "${1:-}" = --no-install ]; then
  log "not installed yet: run hack/opcua/ensure-node-opcua.sh (make test runs it)"
  exit 3
fi
for tool in node npm; do
  command -v "$tool" >/dev/null || { log "$tool is missing: install Node.js 20 or later, with npm"; exit 1; }
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  log "node $(node --version) is too old for node-opcua $VERSION: install Node.js 20 or later"
  exit 1
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.node-opcua.lock"
if ! flock -n 9; then
  log "another install is running; waiting for it"
  flock 9
fi
if warm; then echo "$DEST"; exit 0; fi

log "installing node-opcua-server@$VERSION into $DEST"
tmp=$(mktemp -d "$CACHE/.node-opcua-$VERSION.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
if ! out=$(cd "$tmp" && npm install --prefix "$tmp" --no-audit --no-fund --no-save --omit=dev \
  --loglevel=error "node-opcua-server@$VERSION" "node-opcua-client@$VERSION" 2>&1); then
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
