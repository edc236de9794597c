#!/usr/bin/env bash
# Long fuzz run of one target: up to RUNS executions (default 1000000) or 600 s, whichever comes
# first, from a temporary copy of its seed corpus (fuzz/corpus/ is not modified). Prints the final
# libFuzzer stats line (execs, cov, ft, corpus) and a one-line summary.
#
#   bash ci/fuzz-long.sh TARGET [RUNS]
#   FUZZ_MAX_SECONDS=3600 FUZZ_KEEP_CORPUS=/tmp/grown bash ci/fuzz-long.sh client_frame 10000000
#
# FUZZ_KEEP_CORPUS=DIR keeps the grown corpus in DIR (minimize it into fuzz/corpus/TARGET with
# `cargo +nightly fuzz cmin` before committing any of it). The full log is left in
# fuzz/artifacts/TARGET/long-run.log. Exit status is libFuzzer's (non-zero on a crash).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
  echo "usage: $0 TARGET [RUNS]" >&2
  exit 2
fi
target="$1"
runs="${2:-1000000}"
max_seconds="${FUZZ_MAX_SECONDS:-600}"

if ! cargo fuzz --help >/dev/null 2>&1; then
  echo "== cargo install cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# The fuzz crate is its own workspace: start its lockfile from the server's, so the fuzzed code
# is built with the same dependency versions (cargo then only adds libfuzzer-sys and its deps).
cp Cargo.lock fuzz/Cargo.lock

if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
  corpus="$FUZZ_KEEP_CORPUS"
  mkdir -p "$corpus"
else
  corpus="$(mktemp -d "${TMPDIR:-/tmp}/poxide-fuzz-$target.XXXXXX")"
  trap 'rm -rf "$corpus"' EXIT
fi
if [ -d "fuzz/corpus/$target" ]; then
  cp -R "fuzz/corpus/$target/." "$corpus/"
fi
extra=()
if [ -f "fuzz/dicts/$target.dict" ]; then
  extra+=("-dict=$root/fuzz/dicts/$target.dict")
fi

mkdir -p "fuzz/artifacts/$target"
log="fuzz/artifacts/$target/long-run.log"
start=$(date +%s)
status=0
cargo +nightly fuzz run "$target" "$corpus" -- \
  -runs="$runs" -max_total_time="$max_seconds" -rss_limit_mb=2048 -print_final_stats=1 \
  ${extra[@]+"${extra[@]}"} >"$log" 2>&1 || status=$?
elapsed=$(( $(date +%s) - start ))

# libFuzzer's status lines look like
#   #1000000 DONE   cov: 812 ft: 2911 corp: 301/9054b lim: 4096 exec/s: 33333 rss: 81Mb
# the last one is the final state ("DONE" on a normal exit).
final="$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1 || true)"
echo "$final"
if [ -n "$final" ]; then
  execs="$(sed -E 's/^#([0-9]+).*/\1/' <<<"$final")"
  field() { sed -nE "s|.* $1: ([^ ]+).*|\1|p" <<<"$final"; }
  echo "$target: execs=$execs cov=$(field cov) ft=$(field ft) corpus=$(field corp)" \
    "exec/s=$(field exec/s) rss=$(field rss) time=${elapsed}s exit=$status"
else
  echo "$target: no libFuzzer stats (exit=$status); see $log" >&2
fi
if [ "$status" -ne 0 ]; then
  echo "== $target FAILED; last lines of $log:" >&2
  tail -n 40 "$log" >&2
fi
exit "$status"
