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
VERSION=${NFPM_VERSION:-v2.45.2}
case $VERSION in v*) ;; *) VERSION=v$VERSION ;; esac
CACHE=${NFPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wapper/nfpm}
DEST=$CACHE/$VERSION
BIN=$DEST/nfpm

log() { echo "[ensure-nfpm] $*" >&2; }

warm() {
  [ -x "$BIN" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]
}

if warm; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { log "go is missing: install the Go toolchain"; exit 1; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if warm; then echo "$BIN"; exit 0; fi

log "building nfpm $VERSION with $(go env GOVERSION) into $DEST"
tmp=$(mktemp -d "$CACHE/.build-$VERSION.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
# A throwaway module folder, so that no go.mod or go.work of the caller's is
# consulted: `go install pkg@version` builds with nfpm's own go.mod.
(
  cd "$tmp"
  go mod init nfpm-build >/dev/null 2>&1
  env GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$tmp/bin" \
    go install -trimpath -ldflags "-s -w -X main.version=${VERSION#v}" \
      "github.com/goreleaser/nfpm/v2/cmd/nfpm@$VERSION"
) >&2 || { log "build failed"; exit 1; }
"$tmp/bin/nfpm" --version >/dev/null || { log "the built nfpm does not run"; exit 1; }
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$tmp/bin/nfpm" "$BIN"
echo "$VERSION" > "$DEST/VERSION"
log "built in $((SECONDS - start))s: $BIN ($(du -h "$BIN" | cut -f1))"
echo "$BIN"
