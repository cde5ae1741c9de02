#!/usr/bin/env bash
# ensure-toxiproxy.sh: make sure Shopify's Toxiproxy server (toxiproxy-server,
# the TCP proxy that injects latency, bandwidth caps, resets and half-open
# links on command over its HTTP API), built from its unchanged source on the
# Go module proxy, is in a cache folder, and print the binary's path as the
# last line of stdout. The fault-injection e2e test (e2e/toxiproxy_test.go)
# puts one of its proxies between each wapper-host and wapper-cloud.
#
# A warm cache returns at once; a cold build downloads a few modules from the
# Go module proxy and compiles in well under a minute on 2 cores. Concurrent
# callers wait for one build (flock). The build goes to a temporary folder
# inside the cache first, so an interrupted one leaves no half binary; it
# never touches the repository tree.
#
# With --no-install it only prints the path when the cache is warm, and exits
# 3 otherwise (for a test helper that should not build).
#
# Environment:
#   TOXIPROXY_VERSION  github.com/Shopify/toxiproxy/v2 version (default v2.5.0)
#   TOXIPROXY_CACHE    cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/wapper/toxiproxy)
#
# Needs Go and the Go module proxy, nothing else.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cache.sh"
VERSION=${TOXIPROXY_VERSION:-v2.5.0}
case $VERSION in v*) ;; *) VERSION=v$VERSION ;; esac
CACHE=${TOXIPROXY_CACHE:-$(cache_home)/wapper/toxiproxy}
DEST=$CACHE/$VERSION
BIN=$DEST/toxiproxy-server

warm() {
  [ -x "$BIN" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]
}

cache_exit_if_warm "$BIN" warm
cache_check_only --no-install "${1:-}" "toxiproxy-server $VERSION is not built yet: run hack/toxiproxy/ensure-toxiproxy.sh"
cache_require go "install the Go toolchain"
cache_lock "$CACHE" .lock build
cache_exit_if_warm "$BIN" warm

log "building toxiproxy-server $VERSION (github.com/Shopify/toxiproxy/v2/cmd/server) with $(go env GOVERSION) into $DEST"
cache_mktemp -d "$CACHE/.build-$VERSION.XXXXXX"
tmp=$CACHE_TMP
cache_start_timer
cache_go_install "$tmp" "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION" \
  "-X github.com/Shopify/toxiproxy/v2.Version=${VERSION#v}" || { log "build failed"; exit 1; }
"$tmp/bin/server" -version >&2 || { log "the built toxiproxy-server does not run"; exit 1; }
mkdir "$tmp/out"
mv "$tmp/bin/server" "$tmp/out/toxiproxy-server"
echo "$VERSION" > "$tmp/out/VERSION"
cache_install_dir "$tmp/out" "$DEST"
log "built in $(cache_elapsed)s: $BIN ($(du -h "$BIN" | cut -f1))"
echo "$BIN"
