#!/usr/bin/env bash
# Runs the benchmarks (as root: they mount for real, in a private namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jq >/dev/null && command -v mkfs.xfs >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq xfsprogs e2fsprogs >/dev/null
}
scripts/build-plugins.sh
scripts/build-shim.sh
cargo build --release --bins
cargo bench -p wasmvol-bench "$@"
