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
VERSION=${INFLUXD_VERSION:-v1.8.3}
case $VERSION in v*) ;; *) VERSION=v$VERSION ;; esac
CACHE=${INFLUXD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wapper/influxd}
DEST=$CACHE/$VERSION
BIN=$DEST/influxd

log() { echo "[ensure-influxd] $*" >&2; }

warm() {
  [ -x "$BIN" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]
}

if warm; then echo "$BIN"; exit 0; fi
if [ "${1:-}" = --no-install ]; then
  log "influxd $VERSION is not built yet: run hack/influxdb/ensure-influxd.sh"
  exit 3
fi
command -v go >/dev/null || { log "go is missing: install the Go toolchain"; exit 1; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if warm; then echo "$BIN"; exit 0; fi

log "building influxd $VERSION (github.com/influxdata/influxdb/cmd/influxd) with $(go env GOVERSION) into $DEST"
tmp=$(mktemp -d "$CACHE/.build-$VERSION.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
# A throwaway module folder, so that no go.mod or go.work of the caller's
# (e.g. this repository's) is consulted; `go install pkg@version` builds with
# the module's own go.mod. GOFLAGS is reset so that a caller's -mod=... does
# not break the install; GOTOOLCHAIN=local keeps the toolchain we have.
(
  cd "$tmp"
  go mod init influxd-build >/dev/null 2>&1
  env GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$tmp/bin" \
    go install -trimpath \
      -ldflags "-s -w -X main.version=${VERSION#v} -X main.branch=${VERSION#v} -X main.commit=module-proxy" \
      "github.com/influxdata/influxdb/cmd/influxd@$VERSION"
) >&2 || { log "build failed"; exit 1; }
"$tmp/bin/influxd" version >&2 || { log "the built influxd does not run"; exit 1; }
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$tmp/bin/influxd" "$BIN"
echo "$VERSION" > "$DEST/VERSION"
log "built in $((SECONDS - start))s: $BIN ($(du -h "$BIN" | cut -f1))"
echo "$BIN"
