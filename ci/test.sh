#!/usr/bin/env bash
# Every test poxide has: formatting and lints, the Rust unit, property and conformance tests,
# then the real client libraries (pusher-js, Laravel Echo, the Node and Python SDKs) against
# the release binary, and every fuzz target briefly. Installs what it needs (npm packages, a
# Python venv, cargo-fuzz, redis-server, openssl, chromium and postgresql from Debian's packages); safe to run
# on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
# The cluster tests start their own redis-server processes; the TLS tests make certificates
# with the openssl command; the web console's tests drive chromium; the apps-store tests run
# a throwaway PostgreSQL cluster. All from Debian's packages, when missing.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages) for the cluster, TLS, console and apps-store tests"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "== cargo test"
cargo test --locked
echo "== fuzz targets (a few seconds each, so they keep compiling)"
FUZZ_SECONDS="${FUZZ_SECONDS:-3}" bash ci/fuzz-smoke.sh
if [ -f ci/client-tests.sh ]; then
  echo "== client libraries"
  # The debug binary `cargo test` just built: the release build would add two minutes.
  POXIDE_PROFILE=dev bash ci/client-tests.sh
fi
