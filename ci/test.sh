#!/usr/bin/env bash
# Every test poxide has: formatting and lints, the Rust unit, property and conformance tests,
# then the real client libraries (pusher-js, Laravel Echo, the Node and Python SDKs) against
# the release binary. Installs what it needs; safe to run on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
if [ -f ci/client-tests.sh ]; then
  echo "== client libraries"
  bash ci/client-tests.sh
fi
