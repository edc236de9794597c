#!/usr/bin/env bash
# The cluster benchmark: three nodes on one redis-server, subscribers spread over them (one
# pusher-bench instance per node, each on its own channel), every event triggered through the
# third node; then the same load on a single node in the same run. Prints one JSON line per
# pusher-bench instance and a summary per scenario.
#
# Usage: bash benches/cluster.sh [release binary] [pusher-bench binary]
# Env: SUBS (per instance, default 333), EVENTS (per instance, default 3000), RATE (events/s per
#      instance for the fixed-rate run, default 50: 3 x 333 x 50 = 50 k deliveries/s).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/target/release/poxide}"
BENCH="${2:-${PUSHER_BENCH:-/tmp/pusher-bench-target/release/pusher-bench}}"
SUBS="${SUBS:-333}"
EVENTS="${EVENTS:-3000}"
RATE="${RATE:-50}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 200); do
    curl -fs "http://127.0.0.1:$1/ready" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "node on $1 not ready" >&2; exit 1
}

# start_node PORT [REDIS_PORT]: a node with the bench tool's credentials.
start_node() {
  local port="$1" redis="${2:-}"
  local args=(--host 127.0.0.1 --port "$port" --app-id app-id --app-key app-key --app-secret app-secret)
  if [ -n "$redis" ]; then args+=(--redis-url "redis://127.0.0.1:$redis"); fi
  env -u PORT -u POXIDE_REDIS_URL RUST_LOG=poxide=warn "$BIN" "${args[@]}" >"$WORK/node-$port.log" 2>&1 &
  PIDS+=("$!")
  STARTED=$!
  wait_ready "$port"
}

# run LABEL RATE_ARGS PORT... : one pusher-bench per port (subscribers there), triggers to the last.
run() {
  local label="$1" rate="$2"; shift 2
  local ports=("$@") http="${!#}" i=0 pids=()
  for port in "${ports[@]}"; do
    local pid
    pid="$(ss -Hltnp "sport = :$port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)"
    "$BENCH" fanout --port "$port" --http-port "$http" -n "$SUBS" -e "$EVENTS" $rate \
      --prefix "b$i-" --server-pid "$pid" --label "$label node$i" --json >"$WORK/$label-$i.json" 2>/dev/null &
    pids+=("$!")
    i=$((i + 1))
  done
  for p in "${pids[@]}"; do wait "$p"; done
  python3 - "$label" "$WORK"/"$label"-*.json <<'PY'
import json, sys
label, files = sys.argv[1], sys.argv[2:]
rows = [json.loads(open(f).read().strip().splitlines()[-1]) for f in files]
for r in rows:
    print(json.dumps(r))
total = sum(r["deliveries_per_s"] for r in rows)
p50 = max(r["e2e_p50_ms"] for r in rows)
p99 = max(r["e2e_p99_ms"] for r in rows)
loss = max(r.get("loss_pct", 0) for r in rows)
# Each instance reports its server's CPU over its own deliveries; several instances may share
# one server, so per server: its CPU time per second over the deliveries it made per second.
servers = {}
for r in rows:
    cpu_per_s = (r.get("server_cpu_us_per_delivery") or 0) * r["deliveries_per_s"]
    s = servers.setdefault(r["target"], {"cpu": [], "deliveries": 0.0})
    s["cpu"].append(cpu_per_s)
    s["deliveries"] += r["deliveries_per_s"]
cpu = [round(sum(s["cpu"]) / len(s["cpu"]) / s["deliveries"], 2) for s in servers.values()]
print(f"== {label}: {total:,.0f} deliveries/s in all, e2e p50 <= {p50} ms, p99 <= {p99} ms, "
      f"server CPU us per delivery made, per node: {cpu} (the last node also serves every "
      f"trigger), loss <= {loss}%")
PY
}

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=("$!")
sleep 0.3
N1="$(free_port)"; N2="$(free_port)"; N3="$(free_port)"
start_node "$N1" "$REDIS_PORT"; start_node "$N2" "$REDIS_PORT"; start_node "$N3" "$REDIS_PORT"
run cluster-flat-out "" "$N1" "$N2" "$N3"
run cluster-fixed-rate "--rate $RATE" "$N1" "$N2" "$N3"
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()

SINGLE="$(free_port)"
start_node "$SINGLE"
run single-flat-out "" "$SINGLE" "$SINGLE" "$SINGLE"
run single-fixed-rate "--rate $RATE" "$SINGLE" "$SINGLE" "$SINGLE"
