#!/usr/bin/env bash
# Installs everything otpgate needs on a fresh Debian machine with Rust and Node (idempotent;
# about 3 minutes the first time, about a second afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The Sentinel store tests start three of these (Debian package redis-sentinel).
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
# The Kratos courier test evaluates examples/kratos/otpgate-sms.jsonnet (Debian package jsonnet).
command -v jsonnet >/dev/null 2>&1 || need+=(jsonnet)
# deploy/ checks: promtool (Debian package prometheus) and systemd-analyze.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The official Python clients' venv below (Debian's python3 makes one only with python3-venv).
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# wasm-bindgen-cli must equal the wasm-bindgen crate pinned in Cargo.lock. No --locked: the
# registry reachable here lacks one of the CLI's locked transitive versions (toolchain.md).
WBG=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WBG" ]; then
  echo "setup: cargo install wasm-bindgen-cli $WBG"
  cargo install -q wasm-bindgen-cli --version "$WBG"
fi

# twiggy: scripts/size.sh's breakdown of the package's wasm by crate.
command -v twiggy >/dev/null 2>&1 || { echo "setup: cargo install twiggy"; cargo install -q twiggy; }

# JavaScript tools, test drivers and benchmarks: one npm workspace (package.json: scripts/tools,
# tests-node, e2e, examples/edge-worker, bench/js), pinned by the one package-lock.json.
# Installed again when the lock file is newer than the last install or a package is missing
# (scripts/build-pkg.sh alone installs only scripts/tools').
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] ||
  ! npm ls --depth=0 >/dev/null 2>&1; then
  echo "setup: npm ci (the npm workspace)"
  npm ci --no-audit --no-fund --loglevel=error
fi
# moto's server mode (PyPI), for the AWS SNS fallback test (tests/gateway/sns_moto.rs), in its
# own venv under the cache.
MOTO_VENV=${XDG_CACHE_HOME:-$HOME/.cache}/otpgate/moto-venv
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  echo "setup: moto[server] into $MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==5.2.1"
fi
# The official Python clients the API tests drive (the Supabase hook signed by
# `standardwebhooks`, the `twilio` SDK): a venv of their own, pinned by
# crates/otpgate-server/tests/clients/requirements.txt, made again when that file changes.
CLIENTS_REQ=crates/otpgate-server/tests/clients/requirements.txt
CLIENTS_VENV=${XDG_CACHE_HOME:-$HOME/.cache}/otpgate/clients-venv
if ! cmp -s "$CLIENTS_REQ" "$CLIENTS_VENV/requirements.txt" || ! [ -x "$CLIENTS_VENV/bin/python" ]; then
  echo "setup: pip install the official clients into $CLIENTS_VENV"
  rm -rf "$CLIENTS_VENV"
  mkdir -p "$(dirname "$CLIENTS_VENV")"
  python3 -m venv "$CLIENTS_VENV"
  "$CLIENTS_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$CLIENTS_REQ"
  cp "$CLIENTS_REQ" "$CLIENTS_VENV/requirements.txt"
fi
# schemathesis (pinned in scripts/fuzz-http.sh), which scripts/test.sh runs over the
# integration routes: its own venv.
bash scripts/fuzz-http.sh --install
echo "setup: ok"

