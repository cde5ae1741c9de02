#!/usr/bin/env bash
# ensure-otelcol.sh: make sure the test OpenTelemetry Collector (main.go in
# this folder: otlp receiver; file and debug exporters, collector v0.161.0)
# is built from the Go module proxy into a cache folder, and print the
# binary's path as the last line of stdout.
#
# The cache key is a hash of go.mod, go.sum and main.go (and the Go version,
# GOOS and GOARCH), so an edit to any of them builds a new binary:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/wapper/otelcol/<hash>/otelcol
# A warm cache returns at once. A cold build downloads the modules and
# compiles about 850 packages: about 3.5 minutes on 2 cores with empty module
# and build caches, well under a minute with a warm Go build cache.
# Concurrent callers wait for one build (flock); the binary is built in a
# temporary file and moved into place, so an interrupted build leaves none.
#
# With --no-build it only prints the path when the cache is warm, and exits
# 3 otherwise (for a test helper that should skip rather than build).
#
# Environment:
#   OTELCOL_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/wapper/otelcol)
#   GO             go command (default go)
#
# Only the Go module proxy is used. go.sum is committed and complete, so the
# build runs with -mod=readonly and never edits this folder.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cache.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GO=${GO:-go}
CACHE=${OTELCOL_CACHE:-$(cache_home)/wapper/otelcol}

cache_require "$GO" "install Go (see go.mod for the version)"
HASH=$( {
  cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go"
  GOFLAGS='' "$GO" env GOVERSION GOOS GOARCH
} | sha256sum | cut -c1-16)
DEST=$CACHE/$HASH
BIN=$DEST/otelcol

cache_exit_if_warm "$BIN" test -x "$BIN"
cache_check_only --no-build "${1:-}" "not built yet: run hack/otelcol/ensure-otelcol.sh"
cache_lock "$CACHE" .lock build
cache_exit_if_warm "$BIN" test -x "$BIN"

log "building the collector into $BIN (cold: about 3.5 minutes on 2 cores)"
mkdir -p "$DEST"
cache_mktemp "$DEST/.otelcol.XXXXXX"
tmp=$CACHE_TMP
cache_start_timer
# The project's own GOFLAGS (for example -mod=vendor) and any go.work must
# not leak into this separate module.
GOFLAGS="-mod=readonly -buildvcs=false" GOWORK=off CGO_ENABLED=0 \
  "$GO" build -C "$HERE" -trimpath -ldflags='-s -w' -o "$tmp" . >&2
chmod 0755 "$tmp"
"$tmp" --version >&2
mv -f "$tmp" "$BIN"
log "built in $(cache_elapsed)s"
echo "$BIN"
