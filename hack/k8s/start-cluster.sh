#!/usr/bin/env bash
# start-cluster.sh RUNDIR: start etcd and kube-apiserver on loopback for
# local development, and write RUNDIR/kubeconfig (bearer token, verified TLS).
#
# The binaries come from ensure-k8s-bins.sh (built on first use). Ports are
# picked free unless ETCD_PORT, ETCD_PEER_PORT or API_PORT are set. Stop the
# cluster with stop-cluster.sh RUNDIR; logs are in RUNDIR/*.log.
#
# Tests do not use this script: they start their own cluster through the Go
# package internal/k8stest.
set -euo pipefail
RUN=${1:?usage: start-cluster.sh RUNDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
BINS=$("$HERE/ensure-k8s-bins.sh")
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)
if [ -f "$RUN/apiserver.pid" ] && kill -0 "$(cat "$RUN/apiserver.pid")" 2>/dev/null; then
  echo "a cluster already runs in $RUN; stop it with $HERE/stop-cluster.sh $RUN" >&2
  exit 1
fi
mkdir -p "$RUN/etcd" "$RUN/certs" "$RUN/pki"

# Ports below the kernel's ephemeral range, free in every TCP state: a port
# in the ephemeral range can be taken by an outgoing loopback connection
# between the pick and the bind (etcd once failed with "address already in
# use" that way).
used=" "
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
  local p
  while :; do
    p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
    case "$used" in *" $p "*) continue ;; esac
    if [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]; then used="$used$p "; echo "$p"; return; fi
  done
}
ETCD_PORT=${ETCD_PORT:-$(free_port)}
used="$used$ETCD_PORT "
ETCD_PEER_PORT=${ETCD_PEER_PORT:-$(free_port)}
used="$used$ETCD_PEER_PORT "
API_PORT=${API_PORT:-$(free_port)}

PKI=$RUN/pki
if [ ! -f "$PKI/sa.key" ]; then
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
TOKEN=$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$TOKEN,admin,admin-uid,system:masters" >"$PKI/tokens.csv"
chmod 600 "$PKI/tokens.csv"

ok=0
trap '[ "$ok" = 1 ] || "$HERE/stop-cluster.sh" "$RUN"' EXIT

"$BINS/etcd" --data-dir "$RUN/etcd" --name wapper \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "wapper=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync >"$RUN/etcd.log" 2>&1 &
echo $! >"$RUN/etcd.pid"
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$ETCD_PORT/health" >/dev/null && break
  kill -0 "$(cat "$RUN/etcd.pid")" 2>/dev/null || { echo "etcd exited; its log:" >&2; tail -30 "$RUN/etcd.log" >&2; exit 1; }
  sleep 0.1
done

"$BINS/kube-apiserver" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --cert-dir="$RUN/certs" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --service-account-issuer="https://127.0.0.1:$API_PORT" \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --token-auth-file="$PKI/tokens.csv" \
  --authorization-mode=RBAC \
  --disable-admission-plugins=ServiceAccount \
  --allow-privileged=true \
  --endpoint-reconciler-type=none \
  >"$RUN/apiserver.log" 2>&1 &
echo $! >"$RUN/apiserver.pid"
for _ in $(seq 1 1200); do
  if [ -f "$RUN/certs/apiserver.crt" ] &&
    curl -sf --cacert "$RUN/certs/apiserver.crt" -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then
    ok=1
    break
  fi
  kill -0 "$(cat "$RUN/apiserver.pid")" 2>/dev/null || { echo "kube-apiserver exited; its log:" >&2; tail -30 "$RUN/apiserver.log" >&2; exit 1; }
  sleep 0.1
done
[ "$ok" = 1 ] || { echo "kube-apiserver not ready after 120s; its log:" >&2; tail -30 "$RUN/apiserver.log" >&2; exit 1; }

cat >"$RUN/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: wapper-dev
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$RUN/certs/apiserver.crt")
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: wapper-dev
  context: {cluster: wapper-dev, user: admin}
current-context: wapper-dev
KC
chmod 600 "$RUN/kubeconfig"
echo "kube-apiserver ready at https://127.0.0.1:$API_PORT"
echo "export KUBECONFIG=$RUN/kubeconfig"
