#!/usr/bin/env bash
# Installs the Debian packages the tests use as real peers, where missing.
# Idempotent and quiet when everything is present.
#
# It waits for the dpkg lock when another apt run holds it, instead of
# failing. Debian starts the daemons it installs (mosquitto on port 1883,
# docker-registry on 5000, gpsd on 2947, snmpd on 161, redis on 6379,
# mariadb on 3306); the tests run their own instances
# on ports of their own, so no service may start: a policy-rc.d denies
# starts while this script installs, and services that are up anyway are
# disabled and stopped with their own service commands. No process is ever
# stopped by name.
set -euo pipefail
pkgs=(
  mosquitto mosquitto-clients   # independent MQTT broker and clients
  mbpoll                        # independent Modbus client
  socat python3-pymodbus python3-serial-asyncio  # Modbus RTU peer over a pty pair
  docker-registry               # independent OCI registry
  rustc cargo libstd-rust-dev-wasm32 lld-14  # Rust SDK and plugins (lld-14 links wasm)
  gpsd gpsd-clients             # gpsd and gpsfake, NMEA peer for the Rust mapper
  wabt                          # wat2wasm: hostile test modules are written in WAT
  curl ca-certificates openssl
  gcc libc6-dev                 # cgo for go test -race, and for edgecore's sqlite driver
  sqlite3 iproute2              # read edgecore's database in tests; ss picks free ports
  snmpd snmp                    # net-snmp agent and snmpget/snmpset/snmptrap, SNMP mapper peer
  redis-server redis-tools      # dbMethod redis peer, and redis-cli to read what landed
  mariadb-server mariadb-client # dbMethod mysql peer, and mariadb to read what landed
  chromium                      # headless browser for the device console's test (e2e/console_test.go, driven by playwright-core)
)
# Daemons the packages above start, by package.
declare -A services=([mosquitto]=mosquitto [docker-registry]=docker-registry [gpsd]="gpsd gpsd.socket" [snmpd]=snmpd [redis-server]=redis-server [mariadb-server]=mariadb)

# missing prints the packages that are not installed, with one dpkg-query.
missing() {
  local -A ok=()
  local p st
  while read -r p st; do
    if [ "$st" = "install ok installed" ]; then ok[$p]=1; fi
  done < <(dpkg-query -W -f='${Package} ${Status}\n' "${pkgs[@]}" 2>/dev/null || true)
  for p in "${pkgs[@]}"; do
    if [ -z "${ok[$p]:-}" ]; then echo "$p"; fi
  done
}
mapfile -t todo < <(missing)
[ ${#todo[@]} -eq 0 ] && exit 0

SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
apt=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq)

# One run of this script at a time (make test in two trees, say); the
# next one finds the packages installed.
exec 9>"${TMPDIR:-/tmp}/wapper-deps.$(id -u).lock"
flock 9
mapfile -t todo < <(missing)
[ ${#todo[@]} -eq 0 ] && exit 0
echo "hack/deps.sh: installing ${todo[*]}" >&2

# Deny service starts during the install (invoke-rc.d and
# deb-systemd-invoke ask /usr/sbin/policy-rc.d; exit 101 means "not
# allowed"). A policy that is already there (containers have one) is kept
# as it is, and ours is removed however the script ends.
policy=/usr/sbin/policy-rc.d
ours=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# hack/deps.sh: no service starts while it installs test peers\nexit 101\n' |
    $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  ours=1
fi
cleanup() { if [ -n "$ours" ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

# Quiet unless it fails.
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "hack/deps.sh: failed: $*" >&2
    exit 1
  fi
}
quiet "${apt[@]}" update
quiet "${apt[@]}" install -y --no-install-recommends "${todo[@]}"

# Keep the daemons of what was just installed from starting at boot, and
# stop any that runs now, each with its own service command.
systemd=; [ -d /run/systemd/system ] && systemd=1
for p in "${todo[@]}"; do
  for s in ${services[$p]:-}; do
    if [ -n "$systemd" ]; then
      $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$s" ]; then
      $SUDO update-rc.d "$s" disable >/dev/null 2>&1 || true
      if $SUDO service "$s" status >/dev/null 2>&1; then
        $SUDO service "$s" stop >/dev/null 2>&1 || true
      fi
    fi
  done
done
