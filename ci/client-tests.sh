#!/usr/bin/env bash
# Real client libraries against the binary (release by default):
#   pusher-js 8, Laravel Echo 2 and the `pusher` Node SDK 5 (js-client-tests/, node --test),
#   the PyPI `pusher` SDK (js-client-tests/python/, pytest); then the JS tests again on a
#   three-node cluster sharing a redis-server.
#
# Usage (from the repo root): bash ci/client-tests.sh
# Needs: cargo, node >= 20 with npm, python3 >= 3.8 with venv, redis-server; reaches npm and PyPI
# on first run.
# Exits non-zero if the build, the install, or any test fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/server.sh
source "$ROOT/ci/lib/server.sh"
JS="$ROOT/js-client-tests"
cd "$ROOT"

log() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# POXIDE_PROFILE=dev (as ci/test.sh runs it, right after `cargo test` built that binary) uses
# the debug build; the default is the release binary, as users run it.
PROFILE="${POXIDE_PROFILE:-release}"
case "$PROFILE" in
  release) build_args=(--release); BIN="$ROOT/target/release/poxide" ;;
  dev) build_args=(); BIN="$ROOT/target/debug/poxide" ;;
  *) echo "POXIDE_PROFILE must be release or dev, not $PROFILE" >&2; exit 2 ;;
esac
log "building the $PROFILE binary"
if command -v flock >/dev/null 2>&1; then
  # Serialize with other cargo invocations on a shared machine.
  flock /tmp/poxide-cargo.lock cargo build --locked "${build_args[@]}"
else
  cargo build --locked "${build_args[@]}"
fi
test -x "$BIN"

# ---------------------------------------------------------------------------------------------
log "installing the JS clients (npm ci)"
(cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)

log "installing the Python SDK and pysher (venv in js-client-tests/.venv)"
VENV="$JS/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$JS/python/requirements.txt" \
  -r "$ROOT/conformance/drivers/pysher/requirements.txt"

# ---------------------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/poxide-client-tests.XXXXXX")"
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

SERVER_PID=""
NODE_PIDS=()
REDIS_PID=""
stop_server() {
  poxide_stop "$SERVER_PID" 50
  SERVER_PID=""
}
cleanup() {
  stop_server
  for pid in "${NODE_PIDS[@]}"; do poxide_stop "$pid" 50; done
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_poxide CONFIG LOG PORT: starts the binary in the background (pid in STARTED_PID) and
# waits until it is ready to accept connections.
start_poxide() {
  local config="$1" logfile="$2" port="$3"
  # poxide lets PORT / POXIDE_* / Poxa's variables override the file: drop any from this shell.
  poxide_unset_args
  env "${unset_args[@]}" "$BIN" --config "$config" >"$logfile" 2>&1 &
  STARTED_PID=$!
  poxide_wait_ready "$STARTED_PID" "$port" "$logfile" "$VENV/bin/python" || exit 1
}

PORT="$(free_port)"
CONFIG="$WORK/poxide.toml"
SERVER_LOG="$WORK/poxide.log"
{ printf 'host = "127.0.0.1"\nport = %s\n\n[metrics]\nport = 0\n\n' "$PORT"; cat "$JS/apps.toml"; } >"$CONFIG"
log "starting poxide on 127.0.0.1:$PORT"
start_poxide "$CONFIG" "$SERVER_LOG" "$PORT"
SERVER_PID=$STARTED_PID

# POXIDE_TEST_PORT: the shared server for the tests. (Not POXIDE_PORT: poxide itself reads that.)
export POXIDE_BIN="$BIN" POXIDE_TEST_PORT="$PORT"

# ---------------------------------------------------------------------------------------------
START=$(date +%s)
log "JS client tests (node --test)"
# --test-force-exit: a pusher-js client whose socket the server closed with a 40xx code (e.g.
# terminate_connections -> 4009) leaves a 30 s close timer in pusher-js's bundled faye-websocket;
# without the flag that file's process would idle 30 s after its last test.
js_status=0
(cd "$JS" && node --test --test-reporter=spec --test-concurrency=4 --test-force-exit test/*.test.mjs) || js_status=$?

log "Python SDK tests (pytest)"
py_status=0
(cd "$JS/python" && "$VENV/bin/python" -m pytest -q) || py_status=$?

# ---------------------------------------------------------------------------------------------
# The same tests on a three-node cluster: each pusher-js client on the next node, the server
# SDK on the third. (Test files that start a server of their own are single-node by design.)
cluster_status=0
if command -v redis-server >/dev/null 2>&1; then
  REDIS_PORT="$(free_port)"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  NODE_PORTS=()
  for n in 1 2 3; do
    node_port="$(free_port)"
    node_config="$WORK/node$n.toml"
    { printf 'host = "127.0.0.1"\nport = %s\n\n[metrics]\nport = 0\n\n[cluster]\nredis_url = "redis://127.0.0.1:%s"\n\n' "$node_port" "$REDIS_PORT"; cat "$JS/apps.toml"; } >"$node_config"
    log "starting cluster node $n on 127.0.0.1:$node_port"
    start_poxide "$node_config" "$WORK/node$n.log" "$node_port"
    NODE_PIDS+=("$STARTED_PID")
    NODE_PORTS+=("$node_port")
  done
  mapfile -t shared_files < <(cd "$JS" && grep -l 'useServer()' test/*.test.mjs)
  log "JS client tests on the cluster (${shared_files[*]})"
  (cd "$JS" && POXIDE_TEST_PORT="${NODE_PORTS[2]}" POXIDE_TEST_CLIENT_PORTS="$(IFS=,; echo "${NODE_PORTS[*]}")" \
    node --test --test-reporter=spec --test-concurrency=4 --test-force-exit "${shared_files[@]}") || cluster_status=$?
else
  echo "redis-server is not installed: the cluster run is missing" >&2
  cluster_status=1
fi
END=$(date +%s)

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "poxide died during the tests; its log:" >&2
  tail -n 50 "$SERVER_LOG" >&2
  if [ "$js_status" -eq 0 ]; then js_status=1; fi
fi
stop_server

log "summary: JS exit $js_status, Python exit $py_status, cluster JS exit $cluster_status, tests took $((END - START)) s"
if [ "$js_status" -ne 0 ] || [ "$py_status" -ne 0 ] || [ "$cluster_status" -ne 0 ]; then
  echo "client tests FAILED (server log: last 30 lines)" >&2
  tail -n 30 "$SERVER_LOG" >&2 || true
  exit 1
fi
echo "client tests passed"
