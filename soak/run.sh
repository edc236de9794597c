#!/usr/bin/env bash
# Bounded soak test of the release binary: SOAK_CONNECTIONS WebSocket connections with churn,
# REST triggers and client events for SOAK_SECONDS, sampling the server's RSS, descriptors and
# CPU every 10 s. Not part of ci/test.sh. All traffic goes to 127.0.0.1.
#
# Usage (from anywhere):  bash soak/run.sh
#   quick smoke test:     SOAK_SECONDS=40 SOAK_CONNECTIONS=500 bash soak/run.sh
# Output: $SOAK_OUT (default soak/out/): soak.csv, soak.png, summary.txt, totals.json, poxide.log
# Exit: 0 pass; 1 the server died, its descriptors did not return near the baseline, or the
#       load could not be established; 2 setup failed. Knobs: soak/README.md.
set -euo pipefail

SOAK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SOAK/.." && pwd)"
# shellcheck source=../ci/lib/server.sh
source "$ROOT/ci/lib/server.sh"
OUT="${SOAK_OUT:-$SOAK/out}"
BIN="$ROOT/target/release/poxide"
VENV="$SOAK/.venv"
PYTHON="${SOAK_PYTHON:-python3.11}"

export SOAK_CONNECTIONS="${SOAK_CONNECTIONS:-10000}"
export SOAK_SECONDS="${SOAK_SECONDS:-600}"
export SOAK_SETTLE_SECONDS="${SOAK_SETTLE_SECONDS:-30}"
ACTIVITY_TIMEOUT="${SOAK_ACTIVITY_TIMEOUT:-30}"

log() { printf '==> %s\n' "$*"; }
die() { printf 'soak: %s\n' "$*" >&2; exit 2; }

# ---------------------------------------------------------------------------------------------
# Descriptors: the client holds one per connection, the server one per connection.
hard="$(ulimit -Hn)"
if [ "$hard" = "unlimited" ]; then hard=1048576; fi
ulimit -n "$hard" || die "cannot raise ulimit -n to $hard"
need=$((SOAK_CONNECTIONS + 512))
if [ "$(ulimit -n)" -lt "$need" ]; then
  die "ulimit -n is $(ulimit -n) (hard limit); $SOAK_CONNECTIONS connections need about $need"
fi

# ---------------------------------------------------------------------------------------------
# SOAK_BUILD: 1 (default) builds the release binary first; 0 reuses target/release/poxide
# as it is (built if missing).
if [ "${SOAK_BUILD:-1}" != "0" ] || [ ! -x "$BIN" ]; then
  log "building the release binary"
  (cd "$ROOT" && flock /tmp/poxide-cargo.lock cargo build --release) || die "cargo build --release failed"
else
  log "reusing $BIN (built $(date -r "$BIN" '+%F %T'))"
fi
[ -x "$BIN" ] || die "$BIN is missing"

# ---------------------------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set SOAK_PYTHON)"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating the venv in $VENV"
  "$PYTHON" -m venv "$VENV" || die "python venv failed"
fi
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$SOAK/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  log "installing soak/requirements.txt"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$SOAK/requirements.txt" \
    || die "pip install failed"
  echo "$want" >"$stamp"
fi

# ---------------------------------------------------------------------------------------------
mkdir -p "$OUT"
rm -f "$OUT/soak.csv" "$OUT/soak.png" "$OUT/summary.txt" "$OUT/totals.json"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/poxide-soak.XXXXXX")"
PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
CONFIG="$WORK/poxide.toml"
SERVER_LOG="$OUT/poxide.log"
cat >"$CONFIG" <<EOF
host = "127.0.0.1"
port = $PORT
activity_timeout = $ACTIVITY_TIMEOUT

[[apps]]
id = "soak"
key = "soak-key"
secret = "soak-secret"
client_events = true
EOF

SERVER_PID=""
stop_server() {
  poxide_stop "$SERVER_PID" 100
  SERVER_PID=""
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting poxide on 127.0.0.1:$PORT (log: $SERVER_LOG)"
# poxide lets PORT / POXIDE_* / Poxa's variables override the file: drop any from this shell.
poxide_unset_args
server_cmd=("$BIN" --config "$CONFIG")
if [ -n "${SOAK_SERVER_CPUS:-}" ]; then server_cmd=(taskset -c "$SOAK_SERVER_CPUS" "${server_cmd[@]}"); fi
# setsid: its own session, so a Ctrl-C reaches only the client, which then closes everything and
# reports; the server is stopped below. (setsid execs: $! is the server's pid.)
setsid env "${unset_args[@]}" RUST_LOG="${SOAK_RUST_LOG:-poxide=info}" "${server_cmd[@]}" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

poxide_wait_ready "$SERVER_PID" "$PORT" "$SERVER_LOG" "$VENV/bin/python" || exit 2
if [ "$(readlink "/proc/$SERVER_PID/exe" 2>/dev/null)" != "$(readlink -f "$BIN")" ]; then
  die "pid $SERVER_PID is not $BIN (setsid forked?)"
fi
sleep 0.5 # let the readiness probe's socket close before the baseline sample

# ---------------------------------------------------------------------------------------------
# Outer bound on top of soak.py's own deadline: ramp + churn + close + settle + slack.
ramp_t="${SOAK_RAMP_TIMEOUT:-180}"; settle_t="${SOAK_SETTLE_SECONDS%.*}"
BOUND=$((${ramp_t%.*} + ${SOAK_SECONDS%.*} + ${settle_t:-0} + 300))
client_cmd=("$VENV/bin/python" "$SOAK/soak.py" --port "$PORT" --pid "$SERVER_PID" --out "$OUT")
if [ -n "${SOAK_CLIENT_CPUS:-}" ]; then client_cmd=(taskset -c "$SOAK_CLIENT_CPUS" "${client_cmd[@]}"); fi
log "soak: $SOAK_CONNECTIONS connections, $SOAK_SECONDS s of churn (at most $BOUND s in all)"
status=0
timeout --foreground -s TERM -k 60 "$BOUND" "${client_cmd[@]}" || status=$?

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "soak: poxide died during the soak; the end of its log:" >&2
  tail -n 30 "$SERVER_LOG" >&2
  [ "$status" -ne 0 ] || status=1
fi
stop_server
if [ "$status" -eq 124 ]; then echo "soak: the client overran its $BOUND s bound" >&2; fi
if [ "$status" -ne 0 ]; then status=1; fi
exit "$status"
