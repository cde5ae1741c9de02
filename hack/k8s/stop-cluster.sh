#!/usr/bin/env bash
# stop-cluster.sh RUNDIR: stop the kube-apiserver and etcd that
# start-cluster.sh RUNDIR started (SIGTERM, then SIGKILL after 10s).
# The data in RUNDIR stays; remove the folder to start afresh.
set -uo pipefail
RUN=${1:?usage: stop-cluster.sh RUNDIR}
for p in apiserver etcd; do
  f=$RUN/$p.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$f"
done
exit 0
