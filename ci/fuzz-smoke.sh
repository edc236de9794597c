#!/usr/bin/env bash
# Fuzz smoke test: runs every cargo-fuzz target in fuzz/ for a few seconds from its seed corpus,
# and fails if any target crashes, leaks, times out or fails to build. The committed corpus is
# copied to a temporary directory first, so the run never adds files to fuzz/corpus/.
# Crashing inputs are written to fuzz/artifacts/TARGET/ (git-ignored).
#
#   bash ci/fuzz-smoke.sh                 # every target, 5 s each
#   FUZZ_SECONDS=30 bash ci/fuzz-smoke.sh client_frame rest_request
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and a C++ compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
seconds="${FUZZ_SECONDS:-5}"

if ! cargo fuzz --help >/dev/null 2>&1; then
  echo "== cargo install cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# The fuzz crate is its own workspace: start its lockfile from the server's, so the fuzzed code
# is built with the same dependency versions (cargo then only adds libfuzzer-sys and its deps).
cp Cargo.lock fuzz/Cargo.lock

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
[ "${#targets[@]}" -gt 0 ] || { echo "no fuzz targets found" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/poxide-fuzz-smoke.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Unoptimized: a smoke run of seconds needs the targets to build and run, not speed, and this
# build is a minute shorter than the optimized one (ci/fuzz-long.sh builds optimized).
echo "== cargo fuzz build --dev"
cargo +nightly fuzz build --dev

failed=()
for target in "${targets[@]}"; do
  echo "== fuzz $target (${seconds}s)"
  corpus="$work/$target"
  mkdir -p "$corpus"
  if [ -d "fuzz/corpus/$target" ]; then
    cp -R "fuzz/corpus/$target/." "$corpus/"
  fi
  extra=()
  if [ -f "fuzz/dicts/$target.dict" ]; then
    extra+=("-dict=$root/fuzz/dicts/$target.dict")
  fi
  if cargo +nightly fuzz run --dev "$target" "$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 ${extra[@]+"${extra[@]}"}; then
    echo "== $target: ok"
  else
    echo "== $target: FAILED (input in fuzz/artifacts/$target/)" >&2
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz smoke failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz smoke passed: ${targets[*]}"
