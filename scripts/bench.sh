#!/usr/bin/env bash
# Runs the benchmarks (as root: they mount for real, in a private namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
cargo build --release --bins
cargo bench -p wasmvol-bench "$@"
