#!/usr/bin/env bash
# ensure-nfpm.sh: make sure nfpm (github.com/goreleaser/nfpm/v2, the
# packager `make deb` uses), built from its unchanged source on the Go module
# proxy, is in a cache folder, and print the binary's path as the last line
# of stdout.
#
# A warm cache returns at once; a cold build downloads nfpm's modules and
# compiles for about a minute on 2 cores. Concurrent callers wait for one
# build (flock). The build goes to a temporary folder inside the cache
# first, so an interrupted one leaves no half binary; it never touches the
# repository tree.
#
# Environment:
#   NFPM_VERSION  github.com/goreleaser/nfpm/v2 version (default v2.45.2)
#   NFPM_CACHE    cache folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/wapper/nfpm)
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cache.sh"
VERSION=${NFPM_VERSION:-v2.45.2}
case $VERSION in v*) ;; *) VERSION=v$VERSION ;; esac
CACHE=${NFPM_CACHE:-$(cache_home)/wapper/nfpm}
DEST=$CACHE/$VERSION
BIN=$DEST/nfpm

warm() {
  [ -x "$BIN" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]
}

cache_exit_if_warm "$BIN" warm
cache_require go "install the Go toolchain"
cache_lock "$CACHE" .lock build
cache_exit_if_warm "$BIN" warm

log "building nfpm $VERSION with $(go env GOVERSION) into $DEST"
cache_mktemp -d "$CACHE/.build-$VERSION.XXXXXX"
tmp=$CACHE_TMP
cache_start_timer
cache_go_install "$tmp" "github.com/goreleaser/nfpm/v2/cmd/nfpm@$VERSION" \
  "-X main.version=${VERSION#v}" || { log "build failed"; exit 1; }
"$tmp/bin/nfpm" --version >/dev/null || { log "the built nfpm does not run"; exit 1; }
mkdir "$tmp/out"
mv "$tmp/bin/nfpm" "$tmp/out/nfpm"
echo "$VERSION" > "$tmp/out/VERSION"
cache_install_dir "$tmp/out" "$DEST"
log "built in $(cache_elapsed)s: $BIN ($(du -h "$BIN" | cut -f1))"
echo "$BIN"
