#!/usr/bin/env bash
# Runs the benchmarks that need a real kernel's NFS (benches/benches/nfs.rs)
# inside the test VM, release-built here, and prints their lines.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/vm/build-image.sh >/dev/null
scripts/build-plugins.sh
cargo build --release --bins
build=$(mktemp)
trap 'rm -f "$build"' EXIT
cargo bench -p wasmvol-bench --bench nfs --no-run 2>&1 | tee "$build"
exe=$(grep -Eo 'target/release/deps/nfs-[0-9a-f]+' "$build" | tail -n1)
mkdir -p target/vm-run
cat > target/vm-run/bench.sh <<JOB
set -e
cd "$PWD"
sh scripts/vm/nfs-server.sh
"$PWD/$exe" --bench
JOB
scripts/vm/boot.sh target/vm-run/bench.sh
