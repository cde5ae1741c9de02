#!/usr/bin/env bash
# make demo: run wapper-host on examples/standalone with the embedded MQTT
# broker and show live readings. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

HTTP=${DEMO_HTTP:-127.0.0.1:7777}
MQTT=${DEMO_MQTT:-127.0.0.1:1883}
STATE=${DEMO_STATE:-./.demo-state}

[ -x bin/wapper-host ] || { echo "bin/wapper-host missing: run make build" >&2; exit 1; }
[ -f bin/plugins/virtual.wasm ] || { echo "bin/plugins/virtual.wasm missing: run make plugins" >&2; exit 1; }

bin/wapper-host --manifests examples/standalone --plugin-dir bin/plugins \
  --state-dir "$STATE" --mqtt-listen "$MQTT" --http-listen "$HTTP" \
  --log-level "${DEMO_LOG_LEVEL:-warn}" &
HOST=$!
cleanup() {
  kill -INT "$HOST" 2>/dev/null || true
  wait "$HOST" 2>/dev/null || true
  echo; echo "wapper-host stopped (state kept in $STATE)."
}
trap cleanup EXIT
trap 'exit 0' INT TERM

for _ in $(seq 1 100); do
  curl -fs "http://$HTTP/api/v1/ping" >/dev/null 2>&1 && break
  kill -0 "$HOST" 2>/dev/null || { echo "wapper-host exited; see its log above" >&2; exit 1; }
  sleep 0.2
done

MHOST=${MQTT%:*}; MPORT=${MQTT##*:}
cat <<MSG

wapper-host is running: one simulated thermostat (examples/standalone).
Device console: http://$HTTP/ (open it in a browser)
Or paste these in another terminal:

  curl -s http://$HTTP/api/v1/devices
  curl -s http://$HTTP/api/v1/device/default/thermostat/temperature
  curl -s -X PUT http://$HTTP/api/v1/device/default/thermostat/setpoint -d '{"value": 23.5}'
  curl -s http://$HTTP/api/v1/devicemethod/default/thermostat/SwitchHeating/heating/true
  curl -s http://$HTTP/metrics | grep ^wapper_
  mosquitto_sub -h $MHOST -p $MPORT -v -t '\$hw/events/device/#'
  mosquitto_sub -h $MHOST -p $MPORT -v -t 'demo/#'
  mosquitto_pub -h $MHOST -p $MPORT -t '\$hw/events/device/default/thermostat/twin/update' \\
      -m '{"event_id":"1","timestamp":0,"twin":{"heating":{"expected":{"value":"true"}}}}'

Live readings (Ctrl-C to stop):
MSG

while kill -0 "$HOST" 2>/dev/null; do
  curl -fs "http://$HTTP/api/v1/device/default/thermostat" 2>/dev/null |
    python3 -c 'import json,sys
d=json.load(sys.stdin)["device"]
print("  %-8s " % d["state"] + "  ".join("%s=%s%s" % (t["property"], t.get("reported","?")[:6], "(->%s)" % t["desired"] if t.get("desired") and t.get("desired")!=t.get("reported") else "") for t in d["twins"]), flush=True)' 2>/dev/null || true
  sleep 2
done
