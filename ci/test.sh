#!/usr/bin/env bash
# Every test poxide has: formatting and lints, the Rust unit, property and conformance tests,
# then the real client libraries (pusher-js, Laravel Echo, the Node and Python SDKs) against
# the release binary, and every fuzz target briefly. Installs what it needs (npm packages, a
# Python venv, cargo-fuzz); safe to run on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
echo "== fuzz targets (a few seconds each, so they keep compiling)"
FUZZ_SECONDS="${FUZZ_SECONDS:-3}" bash ci/fuzz-smoke.sh
if [ -f ci/client-tests.sh ]; then
  echo "== client libraries"
  bash ci/client-tests.sh
fi
