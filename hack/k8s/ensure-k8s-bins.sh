#!/usr/bin/env bash
# ensure-k8s-bins.sh: make sure a kube-apiserver and an etcd built from the Go
# module proxy are cached, and print the folder that holds them.
#
# The folder holds `kube-apiserver` and `etcd`; it also works as
# KUBEBUILDER_ASSETS. A warm cache returns at once; a cold build takes about
# 7 minutes on 2 cores. Concurrent callers wait for one build (flock).
#
# With --no-build it only prints the folder when the cache is warm, and
# exits 3 otherwise (the Go test helper uses this to find the binaries).
#
# Environment:
#   K8S_VERSION    kube-apiserver version (default 1.37.2; staging modules pinned to v0.MINOR.PATCH)
#   ETCD_VERSION   etcd server version (default 3.6.16)
#   K8S_BIN_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/wapper-k8s-bins)
#
# Only the Go module proxy is used; nothing else is downloaded.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/cache.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/cache.sh"
K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
CACHE=${K8S_BIN_CACHE:-$(cache_home)/wapper-k8s-bins}
GO=${GO:-go}
DEST=$CACHE/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION-$($GO env GOVERSION)-$($GO env GOOS)-$($GO env GOARCH)

warm() {
  [ -x "$DEST/kube-apiserver" ] && [ -x "$DEST/etcd" ] &&
    "$DEST/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes v$K8S_VERSION"
}

cache_exit_if_warm "$DEST" warm
cache_check_only --no-build "${1:-}" "not built yet: run hack/k8s/ensure-k8s-bins.sh (make test runs it)"
cache_lock "$CACHE" .lock build
cache_exit_if_warm "$DEST" warm

log "building kube-apiserver v$K8S_VERSION and etcd v$ETCD_VERSION into $DEST (cold: about 7 minutes on 2 cores)"
cache_mktemp -d "${TMPDIR:-/tmp}/wapper-k8s-bins.XXXXXX"
work=$CACHE_TMP
mkdir -p "$work/apiserver" "$work/etcd" "$work/out"
# -mod=mod lets `go get` write the throwaway go.mod files; the project's own
# GOFLAGS (for example -mod=vendor) must not leak in.
export GOFLAGS="-mod=mod -buildvcs=false" GOWORK=off CGO_ENABLED=0
cache_start_timer

# 1. kube-apiserver. k8s.io/kubernetes requires its staging modules at v0.0.0
# and replaces them with ./staging paths, which do not exist in the module
# zip. A throwaway module replaces each with its published v0.MINOR.PATCH.
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
STAGING_V=v0.${K8S_VERSION#*.}
GOMOD=$($GO mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -f "$GOMOD" ] || { log "could not download k8s.io/kubernetes@v$K8S_VERSION from the Go module proxy"; exit 1; }
cd "$work/apiserver"
{
  printf 'module wapper.dev/k8sbins/apiserver\n\ngo %s\n\nreplace (\n' "$(sed -n 's/^go //p' "$GOMOD")"
  for m in $(awk '/=> \.\/staging\//{print $1}' "$GOMOD"); do
    if grep -qE "^[[:space:]]+$m v0\.0\.0" "$GOMOD"; then printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_V"; fi
  done
  printf ')\n'
} >go.mod
t=$SECONDS
if ! $GO get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" >"$work/get-apiserver.log" 2>&1; then
  cat "$work/get-apiserver.log" >&2; log "resolving kube-apiserver's dependencies failed"; exit 1
fi
log "kube-apiserver dependencies resolved in $((SECONDS - t))s"
LD="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LD="$LD -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$MINOR -X $pkg.gitTreeState=clean"
done
# No -trimpath on purpose: the client-go and apimachinery packages compiled
# here stay in GOCACHE under the same keys `go test` uses, so the first test
# compile takes seconds instead of minutes.
t=$SECONDS
$GO build -ldflags="$LD" -o "$work/out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
log "kube-apiserver built in $((SECONDS - t))s"

# 2. etcd, from its server module.
cd "$work/etcd"
printf 'module wapper.dev/k8sbins/etcd\n\ngo 1.24\n' >go.mod
t=$SECONDS
if ! $GO get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >"$work/get-etcd.log" 2>&1; then
  cat "$work/get-etcd.log" >&2; log "resolving etcd's dependencies failed"; exit 1
fi
$GO build -ldflags="-s -w" -o "$work/out/etcd" go.etcd.io/etcd/server/v3
log "etcd built in $((SECONDS - t))s"

"$work/out/kube-apiserver" --version | grep -qx "Kubernetes v$K8S_VERSION" || { log "built kube-apiserver reports the wrong version"; exit 1; }
cache_install_dir "$work/out" "$DEST"
log "built in $(cache_elapsed)s: $DEST"
echo "$DEST"
