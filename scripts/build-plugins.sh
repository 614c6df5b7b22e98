#!/usr/bin/env bash
# Builds every guest driver of the workspace (plugins/* and tests/drivers/*)
# into a wasm component under target/components/<name>.wasm, with
# `wasmvol build`: rustup's wasm32-wasip2 target when installed, otherwise
# the wasm standard library built from Debian's Rust source (rustc-web,
# rust-web-src, wasi-libc, installed when missing; host/src/cli/build.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
crates=(plugins/*/ tests/drivers/*/)
[ -e "${crates[0]}" ] || { echo "build-plugins: no driver crates found" >&2; exit 1; }
echo "build-plugins: building wasmvol itself first (cargo build --release -p wasmvol)" >&2
cargo build --release -p wasmvol --bin wasmvol
target/release/wasmvol build --profile wasm --target-dir target/wasm --out target/components "${crates[@]}"
