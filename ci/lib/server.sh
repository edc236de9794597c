# Shell helpers for the scripts that start a poxide binary (ci/client-tests.sh, soak/run.sh).
# Source it; it defines functions only.

# Fills the array `unset_args` with `-u NAME` for every variable of this shell that poxide
# would read over its config file (PORT, POXIDE_*, Poxa's names), for `env "${unset_args[@]}"`.
poxide_unset_args() {
  unset_args=()
  local name
  while IFS= read -r name; do
    unset_args+=(-u "$name")
  done < <(env | sed -n -E 's/^(PORT|PAYLOAD_LIMIT|ACTIVITY_TIMEOUT|WEB_HOOK|POXA_[A-Za-z0-9_]*|POXIDE_[A-Za-z0-9_]*)=.*/\1/p')
}

# poxide_stop PID [TENTHS]: SIGTERM, up to TENTHS tenths of a second (default 50) for a
# graceful exit, then SIGKILL; waits for the process.
poxide_stop() {
  local pid="$1" tenths="${2:-50}"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "$tenths"); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "poxide (pid $pid) did not stop on SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
}

# poxide_wait_ready PID PORT LOG PYTHON: waits up to 10 s until the server on 127.0.0.1:PORT
# answers GET /ready with 200; if it exits or stays unready, prints why with its LOG and
# returns 1.
poxide_wait_ready() {
  local pid="$1" port="$2" logfile="$3" python="$4"
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "poxide exited during startup:" >&2
      cat "$logfile" >&2
      return 1
    fi
    if "$python" -c 'import sys, urllib.request; sys.exit(urllib.request.urlopen("http://127.0.0.1:%s/ready" % sys.argv[1], timeout=1).status != 200)' "$port" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "poxide was not ready on 127.0.0.1:$port within 10 s:" >&2
  cat "$logfile" >&2
  return 1
}
