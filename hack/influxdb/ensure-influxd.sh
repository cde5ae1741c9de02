#!/usr/bin/env bash
# ensure-influxd.sh: make sure a real InfluxDB OSS 1.x server (influxd), built
# from InfluxData's unchanged source on the Go module proxy, is in a cache
# folder, and print the binary's path as the last line of stdout.
#
# InfluxDB 1.8+ serves the v2 compatibility write API (POST /api/v2/write,
# bucket "db" or "db/rp", token "user:password" or anything when auth is off),
# which is what github.com/influxdata/influxdb-client-go/v2 sends, next to the
# 1.x /write and /query (InfluxQL) endpoints. Debian 12's influxdb package is
# 1.6.7, too old for /api/v2/write, so this builds from source instead.
#
# v1.8.3 is the default: it is pure Go (its Flux is the pre-Rust v0.65), so it
# needs no cgo, no Rust and no apt packages, and it builds with `go install`
# against InfluxData's own go.mod (no replace, no upgrades). Later 1.x
# releases need the Rust libflux through cgo.
#
# A warm cache returns at once; a cold build downloads ~90 modules from the Go
# module proxy and compiles for about 2-3 minutes on 2 cores. Concurrent
# callers wait for one build (flock). The build goes to a temporary folder
# inside the cache first, so an interrupted one leaves no half binary; it
# never touches the repository tree.
#
# With --no-install it only prints the path when the cache is warm, and exits
# 3 otherwise.
#
# Environment:
#   INFLUXD_VERSION  github.com/influxdata/influxdb version (default v1.8.3)
#   INFLUXD_CACHE    cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/wapper/influxd)
#
# Needs Go (any recent toolchain; tested with Go 1.26) and the Go module proxy.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cache.sh"
VERSION=${INFLUXD_VERSION:-v1.8.3}
case $VERSION in v*) ;; *) VERSION=v$VERSION ;; esac
CACHE=${INFLUXD_CACHE:-$(cache_home)/wapper/influxd}
DEST=$CACHE/$VERSION
BIN=$DEST/influxd

warm() {
  [ -x "$BIN" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]
}

cache_exit_if_warm "$BIN" warm
cache_check_only --no-install "${1:-}" "influxd $VERSION is not built yet: run hack/influxdb/ensure-influxd.sh"
cache_require go "install the Go toolchain"
cache_lock "$CACHE" .lock build
cache_exit_if_warm "$BIN" warm

log "building influxd $VERSION (github.com/influxdata/influxdb/cmd/influxd) with $(go env GOVERSION) into $DEST"
cache_mktemp -d "$CACHE/.build-$VERSION.XXXXXX"
tmp=$CACHE_TMP
cache_start_timer
cache_go_install "$tmp" "github.com/influxdata/influxdb/cmd/influxd@$VERSION" \
  "-X main.version=${VERSION#v} -X main.branch=${VERSION#v} -X main.commit=module-proxy" || { log "build failed"; exit 1; }
"$tmp/bin/influxd" version >&2 || { log "the built influxd does not run"; exit 1; }
mkdir "$tmp/out"
mv "$tmp/bin/influxd" "$tmp/out/influxd"
echo "$VERSION" > "$tmp/out/VERSION"
cache_install_dir "$tmp/out" "$DEST"
log "built in $(cache_elapsed)s: $BIN ($(du -h "$BIN" | cut -f1))"
echo "$BIN"
