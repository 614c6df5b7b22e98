#!/usr/bin/env bash
# scripts/check-fresh-toolchain.sh: a vendor's first hour on a machine with
# no wasm toolchain at all. Removes Debian's wasm Rust packages (rustc-web,
# rust-web-src, cargo-web, wasi-libc), then from an empty directory runs
# `wasmvol new demo && cd demo && wasmvol build && cargo test`, and checks
# that `build` installed the packages again. Not part of scripts/test.sh:
# it uninstalls system packages and needs the Debian mirror; run it by hand
# as root on a machine where that is fine (its timing is in the README).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/check-fresh-toolchain.sh: removes and installs apt packages: run as root" >&2
  exit 1
fi
if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "scripts/check-fresh-toolchain.sh: rustup has wasm32-wasip2, so build would not use the Debian path" >&2
  exit 1
fi
cargo build --bins -q
wasmvol=$PWD/target/debug/wasmvol
packages=(rustc-web rust-web-src cargo-web wasi-libc)
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq "${packages[@]}" >/dev/null
for p in "${packages[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    echo "scripts/check-fresh-toolchain.sh: $p is still installed" >&2
    exit 1
  fi
done
echo "check: ${packages[*]} removed"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
"$wasmvol" new demo
cd demo
start=$(date +%s)
"$wasmvol" build
echo "check: wasmvol build, packages absent at first: $(( $(date +%s) - start )) s"
start=$(date +%s)
cargo test --quiet
echo "check: cargo test of the template: $(( $(date +%s) - start )) s"
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" | grep -q "ok installed" || {
    echo "scripts/check-fresh-toolchain.sh: build did not install $p" >&2
    exit 1
  }
done
echo "check: passed (build installed ${packages[*]} again)"
