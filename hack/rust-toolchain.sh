#!/usr/bin/env bash
# Runs Debian's Rust toolchain (rustc 1.63, cargo, the wasm32 std), installing
# it with apt-get where missing. rustup's toolchains in ~/.cargo/bin have no
# wasm target and crates.io is out of reach, so every Rust build of wapper
# goes through this script.
#
#   hack/rust-toolchain.sh install                 install what is missing
#   hack/rust-toolchain.sh cargo DIR ARGS...       run cargo in crate DIR
#   hack/rust-toolchain.sh wasm DIR LIB OUT        release build of crate DIR
#                                                  for wasm32-unknown-unknown,
#                                                  LIB.wasm copied to OUT
#
# Cargo runs inside DIR so that DIR/.cargo/config.toml (the 64 KiB wasm
# stack) applies. Build output goes to ~/.cache/wapper-cargo/NAME, NAME being
# DIR's last element, or under $WAPPER_CARGO_CACHE if set.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${WAPPER_CARGO_CACHE:-$HOME/.cache/wapper-cargo}

install() {
	local pkgs=() p
	[ -x /usr/bin/rustc ] || pkgs+=(rustc)
	[ -x /usr/bin/cargo ] || pkgs+=(cargo)
	[ -d /usr/lib/rustlib/wasm32-unknown-unknown ] || pkgs+=(libstd-rust-dev-wasm32)
	# lld-14 provides rust-lld, the wasm linker: libstd-rust-dev-wasm32 only
	# recommends it, and recommends are not installed. gpsd and gpsd-clients
	# are the NMEA plugin's test peer (gpsd fed by gpsfake).
	for p in lld-14 gpsd gpsd-clients; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
	done
	[ ${#pkgs[@]} -eq 0 ] && return 0
	echo "rust-toolchain.sh: installing ${pkgs[*]}" >&2
	local sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	# Wait for the dpkg lock when another apt run holds it.
	$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

run_cargo() {
	local dir=$1
	shift
	install
	cd "$ROOT/$dir"
	RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR="$CACHE/$(basename "$dir")" \
		/usr/bin/cargo "$@"
}

case ${1:-} in
install)
	install
	;;
cargo)
	shift
	run_cargo "$@"
	;;
wasm)
	dir=$2 lib=$3 out=$4
	(run_cargo "$dir" build --offline --release --target wasm32-unknown-unknown)
	mkdir -p "$(dirname "$out")"
	cp "$CACHE/$(basename "$dir")/wasm32-unknown-unknown/release/$lib.wasm" "$out"
	;;
*)
	sed -n '2,15p' "$0" >&2
	exit 2
	;;
esac
