# shellcheck shell=bash
# hack/lib/cache.sh: the shared part of the hack/*/ensure-*.sh scripts, which
# build or install a test peer into a cache folder once and print where it is.
# Sourcing it only defines the functions below and sets CACHE_TAG.
#
# A script sources it relative to its own path, so it works from any current
# directory, and keeps its own variables, warm check and build steps:
#
#   set -euo pipefail
#   # shellcheck source=SCRIPTDIR/../lib/cache.sh
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib/cache.sh"
#   CACHE=${FOO_CACHE:-$(cache_home)/wapper/foo}
#   DEST=$CACHE/$VERSION
#   warm() { [ -x "$DEST/foo" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; }
#
#   cache_exit_if_warm "$DEST" warm        # warm: print the path, exit 0
#   cache_check_only --no-install "${1:-}" "not installed yet: run hack/foo/ensure-foo.sh"
#   cache_require go "install the Go toolchain"
#   cache_lock "$CACHE" .lock build        # one build at a time
#   cache_exit_if_warm "$DEST" warm        # another run built it meanwhile
#   log "building foo $VERSION into $DEST"
#   cache_mktemp -d "$CACHE/.build-$VERSION.XXXXXX"; tmp=$CACHE_TMP
#   cache_start_timer
#   ...build into "$tmp/out", with VERSION last...
#   cache_install_dir "$tmp/out" "$DEST"
#   log "built in $(cache_elapsed)s"
#   echo "$DEST"
#
# stdout carries only the path the callers read (Makefile, mk/*.mk, the Go
# test helpers); every message goes to stderr. Exit codes: 0 with the path,
# 3 from cache_check_only (cold cache, nothing built), 1 for a missing tool
# or a failed build.
#
# Functions:
#
#   log MSG...
#     Prints "[TAG] MSG" on stderr. TAG ($CACHE_TAG) is the sourcing
#     script's file name without .sh: ensure-nfpm for hack/nfpm/ensure-nfpm.sh.
#
#   cache_home
#     Prints the user's cache folder, ${XDG_CACHE_HOME:-$HOME/.cache}; a
#     script's default cache root lives under it.
#
#   cache_exit_if_warm PATH CHECK [ARGS...]
#     Runs CHECK ARGS (usually the script's own `warm` function); when it
#     succeeds, prints PATH on stdout and exits 0. Call it first, and again
#     right after cache_lock.
#
#   cache_check_only FLAG ARG MSG
#     For the check-only mode (--no-install or --no-build): when ARG (the
#     script's "${1:-}") is FLAG, logs MSG and exits 3. Call it after the
#     first cache_exit_if_warm, so a warm cache still prints its path.
#
#   cache_require TOOL HINT
#     Exits 1 with "TOOL is missing: HINT" unless TOOL is on PATH.
#
#   cache_require_node WHAT
#     Exits 1 unless node and npm are on PATH and node is version 20 or
#     later; WHAT names the package in the message ("playwright-core 1.65.1").
#
#   cache_quiet MSG CMD [ARGS...]
#     Runs CMD ARGS (a command or a function of the script) in a subshell
#     with stdout and stderr captured; when it fails, prints what it said on
#     stderr, logs MSG and exits 1. For a noisy step whose output matters
#     only on failure (npm install). A cd inside CMD stays in the subshell.
#
#   cache_lock DIR LOCKFILE NOUN
#     Creates DIR and takes an exclusive flock on DIR/LOCKFILE through file
#     descriptor 9, held until the script exits, so concurrent runs build
#     once. When another run holds it, logs "another NOUN is running;
#     waiting for it" (NOUN: install or build) and waits.
#
#   cache_mktemp [-d] TEMPLATE
#     mktemp [-d] TEMPLATE into $CACHE_TMP, removed (rm -rf) when the
#     script exits, so an interrupted build leaves nothing behind. It owns
#     the EXIT trap, which removes every path it made. Make it inside the
#     cache folder when its content is moved into place (same file system,
#     so the final mv is a rename). Once the content has been moved, the
#     removal finds nothing and does nothing.
#
#   cache_install_dir SRC DEST
#     Moves the finished folder SRC to DEST, replacing any old DEST: SRC is
#     first moved next to DEST (DEST.tmp, on DEST's file system), then
#     renamed, so DEST is never a half copy. Call it with the lock held.
#
#   cache_start_timer
#   cache_elapsed
#     cache_start_timer notes the time; cache_elapsed prints the whole
#     seconds since, for the "built in Ns" messages.

CACHE_TAG=$(basename "${BASH_SOURCE[1]:-$0}" .sh)

log() { echo "[$CACHE_TAG] $*" >&2; }

cache_home() { echo "${XDG_CACHE_HOME:-$HOME/.cache}"; }

cache_exit_if_warm() {
  local path=$1
  shift
  if "$@"; then
    echo "$path"
    exit 0
  fi
}

cache_check_only() {
  if [ "$2" = "$1" ]; then
    log "$3"
    exit 3
  fi
}

cache_require() {
  command -v "$1" >/dev/null || { log "$1 is missing: $2"; exit 1; }
}

cache_require_node() {
  local tool major
  for tool in node npm; do
    cache_require "$tool" "install Node.js 20 or later, with npm"
  done
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    log "node $(node --version) is too old for $1: install Node.js 20 or later"
    exit 1
  fi
}

cache_quiet() {
  local msg=$1 out
  shift
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    log "$msg"
    exit 1
  fi
}

cache_lock() {
  mkdir -p "$1"
  exec 9>"$1/$2"
  if ! flock -n 9; then
    log "another $3 is running; waiting for it"
    flock 9
  fi
}

cache_mktemp() {
  CACHE_TMP=$(mktemp "$@")
  CACHE_TMPS+=("$CACHE_TMP")
  trap 'rm -rf "${CACHE_TMPS[@]}"' EXIT
}

cache_install_dir() {
  { rm -rf "$2.tmp" && mv "$1" "$2.tmp" && rm -rf "$2" && mv "$2.tmp" "$2"; } ||
    { log "could not move $1 to $2"; exit 1; }
}

# cache_go_install DIR PKG@VERSION [LDFLAGS]: builds a Go command into
# DIR/bin from a throwaway module in DIR, so that no go.mod or go.work of
# the caller's (e.g. this repository's) is consulted: `go install pkg@version`
# builds with the module's own go.mod. GOFLAGS is reset so that a caller's
# -mod=... does not break the install; GOTOOLCHAIN=local keeps the toolchain
# we have. Its output goes to standard error.
cache_go_install() {
  (
    cd "$1" || exit 1
    go mod init build >/dev/null 2>&1
    env GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$1/bin" \
      go install -trimpath -ldflags "-s -w ${3:-}" "$2"
  ) >&2
}

cache_start_timer() { CACHE_START=$SECONDS; }

cache_elapsed() { echo "$((SECONDS - CACHE_START))"; }
