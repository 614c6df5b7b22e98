#!/usr/bin/env bash
# Soak: N volumes (default 10000) through hostpath's CSI life at concurrency
# 8, Flex mounts beside them, sampling the host's RSS, descriptors and store
# size (benches/benches/soak.rs; samples in target/soak.csv). As root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
scripts/build-shim.sh
cargo build --release --bins
WASMVOL_SOAK_N=${1:-10000} cargo bench -p wasmvol-bench --bench soak
