#!/usr/bin/env bash
# ensure-kubeedge-bins.sh: make sure KubeEdge's cloudcore and edgecore, built
# from the Go module proxy, are cached, and print the folder that holds them.
#
# The folder holds `cloudcore`, `edgecore` and `crds/` (KubeEdge's own CRDs
# from the module's build/crds). A warm cache returns at once; a cold build
# costs about 1,000 CPU-seconds (about 10 minutes on 2 idle cores) and 600 MB
# of modules. Concurrent callers wait for one build (flock).
#
# With --no-build it only prints the folder when the cache is warm, and exits
# 3 otherwise (the Go test helper uses this to find the binaries).
#
# Environment:
#   KE_VERSION          KubeEdge version (default 1.23.1)
#   KE_STAGING_VERSION  version of the published github.com/kubeedge/api and
#                       github.com/kubeedge/beehive modules that stand in for
#                       the module's ./staging folders (default v1.23.0: their
#                       files are identical to v1.23.1's staging trees)
#   KE_BIN_CACHE        cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/wapper-kubeedge-bins)
#
# Only the Go module proxy is used; nothing else is downloaded.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cache.sh"
KE_VERSION=${KE_VERSION:-1.23.1}
KE_STAGING_VERSION=${KE_STAGING_VERSION:-v1.23.0}
CACHE=${KE_BIN_CACHE:-$(cache_home)/wapper-kubeedge-bins}
GO=${GO:-go}
DEST=$CACHE/kubeedge-v$KE_VERSION-$($GO env GOVERSION)-$($GO env GOOS)-$($GO env GOARCH)
STAMP="v$KE_VERSION api/beehive $KE_STAGING_VERSION"

# cloudcore and edgecore have no --version flag: a stamp file marks a finished build.
warm() {
  [ -x "$DEST/cloudcore" ] && [ -x "$DEST/edgecore" ] && [ -d "$DEST/crds" ] &&
    [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$STAMP" ]
}

cache_exit_if_warm "$DEST" warm
cache_check_only --no-build "${1:-}" "not built yet: run hack/kubeedge/ensure-kubeedge-bins.sh (make test runs it)"
cache_lock "$CACHE" .lock build
cache_exit_if_warm "$DEST" warm

log "building cloudcore and edgecore v$KE_VERSION into $DEST (cold: about 10 minutes on 2 cores)"
# A fixed source folder rather than a temporary one: without -trimpath the
# compiled packages are cached in GOCACHE under their folder, so a rebuild
# (a new Go release, a lost cache folder) reuses them.
work=$CACHE/src/kubeedge-v$KE_VERSION
rm -rf "$work"
mkdir -p "$work"
# -mod=mod: the module zip's vendor/ holds only modules.txt. GOWORK=off: its
# go.work names ./staging folders the zip does not carry. cgo is for edgecore's
# sqlite driver.
export GOFLAGS="-mod=mod -buildvcs=false" GOWORK=off CGO_ENABLED=1
cache_start_timer

src=$($GO mod download -json "github.com/kubeedge/kubeedge@v$KE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[ -d "$src" ] || { log "could not download github.com/kubeedge/kubeedge@v$KE_VERSION from the Go module proxy"; exit 1; }
cp -r "$src" "$work/kubeedge"
chmod -R u+w "$work/kubeedge"
cd "$work/kubeedge"
rm -rf vendor go.work go.work.sum
# go.mod replaces kubeedge/api and kubeedge/beehive with ./staging folders that
# are not in the module zip; point them at the published modules. The k8s.io
# replaces name kubeedge's Kubernetes fork, whose hashes go.sum already holds.
$GO mod edit \
  -replace "github.com/kubeedge/api=github.com/kubeedge/api@$KE_STAGING_VERSION" \
  -replace "github.com/kubeedge/beehive=github.com/kubeedge/beehive@$KE_STAGING_VERSION"
t=$SECONDS
nice $GO mod download github.com/kubeedge/api github.com/kubeedge/beehive
nice $GO list -deps ./cloud/cmd/cloudcore ./edge/cmd/edgecore >/dev/null
log "dependencies resolved in $((SECONDS - t))s"

P=github.com/kubeedge/kubeedge/pkg/version
LD="-s -w -X $P.gitVersion=v$KE_VERSION -X $P.gitMajor=${KE_VERSION%%.*} -X $P.gitMinor=$(echo "$KE_VERSION" | cut -d. -f2) -X $P.gitTreeState=clean"
mkdir -p "$work/out"
for c in cloudcore:./cloud/cmd/cloudcore edgecore:./edge/cmd/edgecore; do
  t=$SECONDS
  nice $GO build -ldflags="$LD" -o "$work/out/${c%%:*}" "${c#*:}"
  log "${c%%:*} built in $((SECONDS - t))s"
done
cp -r build/crds "$work/out/crds"
"$work/out/edgecore" --minconfig >/dev/null || { log "the built edgecore does not run"; exit 1; }
"$work/out/cloudcore" --minconfig >/dev/null || { log "the built cloudcore does not run"; exit 1; }
echo "$STAMP" >"$work/out/VERSION"
cd /
cache_install_dir "$work/out" "$DEST"
log "built in $(cache_elapsed)s: $DEST"
echo "$DEST"
