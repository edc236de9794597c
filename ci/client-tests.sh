#!/usr/bin/env bash
# Real client libraries against the release binary:
#   pusher-js 8, Laravel Echo 2 and the `pusher` Node SDK 5 (js-client-tests/, node --test),
#   the PyPI `pusher` SDK (js-client-tests/python/, pytest).
#
# Usage (from the repo root): bash ci/client-tests.sh
# Needs: cargo, node >= 20 with npm, python3 >= 3.8 with venv; reaches npm and PyPI on first run.
# Exits non-zero if the build, the install, or any test fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/server.sh
source "$ROOT/ci/lib/server.sh"
JS="$ROOT/js-client-tests"
cd "$ROOT"

log() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
log "building the release binary"
if command -v flock >/dev/null 2>&1; then
  # Serialize with other cargo invocations on a shared machine.
  flock /tmp/poxide-cargo.lock cargo build --release
else
  cargo build --release
fi
BIN="$ROOT/target/release/poxide"
test -x "$BIN"

# ---------------------------------------------------------------------------------------------
log "installing the JS clients (npm ci)"
(cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)

log "installing the Python SDK (venv in js-client-tests/.venv)"
VENV="$JS/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$JS/python/requirements.txt"

# ---------------------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/poxide-client-tests.XXXXXX")"
PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
CONFIG="$WORK/poxide.toml"
SERVER_LOG="$WORK/poxide.log"
{ printf 'host = "127.0.0.1"\nport = %s\n\n' "$PORT"; cat "$JS/apps.toml"; } >"$CONFIG"

SERVER_PID=""
stop_server() {
  poxide_stop "$SERVER_PID" 50
  SERVER_PID=""
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting poxide on 127.0.0.1:$PORT"
# poxide lets PORT / POXIDE_* / Poxa's variables override the file: drop any from this shell.
poxide_unset_args
env "${unset_args[@]}" "$BIN" --config "$CONFIG" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

ready=""
for _ in $(seq 1 100); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "poxide exited during startup:" >&2
    cat "$SERVER_LOG" >&2
    exit 1
  fi
  if grep -q "listening on 127.0.0.1:$PORT" "$SERVER_LOG" \
    && "$VENV/bin/python" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$PORT" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "poxide did not accept connections on 127.0.0.1:$PORT within 10 s:" >&2
  cat "$SERVER_LOG" >&2
  exit 1
fi

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
END=$(date +%s)

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "poxide died during the tests; its log:" >&2
  tail -n 50 "$SERVER_LOG" >&2
  if [ "$js_status" -eq 0 ]; then js_status=1; fi
fi
stop_server

log "summary: JS exit $js_status, Python exit $py_status, tests took $((END - START)) s"
if [ "$js_status" -ne 0 ] || [ "$py_status" -ne 0 ]; then
  echo "client tests FAILED (server log: last 30 lines)" >&2
  tail -n 30 "$SERVER_LOG" >&2 || true
  exit 1
fi
echo "client tests passed"
