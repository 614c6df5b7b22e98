#!/usr/bin/env bash
# Runs the benchmarks that need a real kernel (benches/benches/nfs.rs: an
# NFS server; benches/benches/lvm.rs: device-mapper) inside the test VM,
# release-built here, and prints their lines.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/vm/build-image.sh >/dev/null
scripts/build-plugins.sh
cargo build --release --bins
build=$(mktemp)
trap 'rm -f "$build"' EXIT
cargo bench -p wasmvol-bench --bench nfs --bench lvm --no-run 2>&1 | tee "$build"
exes=$(grep -Eo 'target/release/deps/(nfs|lvm)-[0-9a-f]+' "$build" | sort -u)
[ "$(echo "$exes" | wc -l)" = 2 ] || { echo "scripts/bench-vm.sh: missing a bench binary" >&2; exit 1; }
mkdir -p target/vm-run
cat > target/vm-run/bench.sh <<JOB
set -e
cd "$PWD"
sh scripts/vm/nfs-server.sh
sh scripts/vm/lvm-setup.sh
for exe in $(echo $exes); do "$PWD/\$exe" --bench; done
JOB
start=$(date +%s)
scripts/vm/boot.sh target/vm-run/bench.sh
echo "bench-vm: guest run $(( $(date +%s) - start )) s"
