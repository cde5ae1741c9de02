#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers, where missing.
# Idempotent and quiet when everything is present.
set -euo pipefail
pkgs=(
  mosquitto mosquitto-clients   # independent MQTT broker and clients
  mbpoll                        # independent Modbus client
  socat python3-pymodbus python3-serial-asyncio  # Modbus RTU peer over a pty pair
  docker-registry               # independent OCI registry
  rustc cargo libstd-rust-dev-wasm32  # Rust SDK and plugins
  gpsd-clients                  # gpsfake, NMEA peer for the Rust mapper
  curl ca-certificates openssl
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "hack/deps.sh: installing ${missing[*]}" >&2
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian broker must not keep port 1883 busy for the tests.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
pkill -x mosquitto 2>/dev/null || true
pkill -f docker-registry 2>/dev/null || true
