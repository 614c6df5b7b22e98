#!/usr/bin/env bash
# Soak: N volumes (default 10000) of DRIVER (hostpath, the default, loopfs,
# scratch, nfs or lvm) through their CSI life at concurrency 8, the driver's
# Flex life beside them, sampling the host's RSS, descriptors and store size
# (benches/benches/soak.rs; samples in target/soak-DRIVER.csv, plotted to
# target/soak-DRIVER.png). nfs and lvm run in the real-kernel VM (an NFS
# server, device-mapper), booted for the run. As root.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
driver=${2:-hostpath}
scripts/build-plugins.sh
scripts/build-shim.sh
cargo build --release --bins
case "$driver" in
  nfs|lvm)
    scripts/vm/build-image.sh >/dev/null
    build=$(mktemp)
    trap 'rm -f "$build"' EXIT
    cargo bench -p wasmvol-bench --bench soak --no-run 2>&1 | tee "$build"
    exe=$(grep -Eo 'target/release/deps/soak-[0-9a-f]+' "$build" | sort -u | head -1)
    [ -n "$exe" ] || { echo "scripts/soak.sh: no soak binary" >&2; exit 1; }
    mkdir -p target/vm-run
    cat > target/vm-run/soak.sh <<JOB
set -e
cd "$PWD"
sh scripts/vm/nfs-server.sh
sh scripts/vm/lvm-setup.sh
WASMVOL_SOAK_N=$n WASMVOL_SOAK_DRIVER=$driver "$PWD/$exe"
JOB
    WASMVOL_VM_TIMEOUT=${WASMVOL_VM_TIMEOUT:-14400} scripts/vm/boot.sh target/vm-run/soak.sh
    ;;
  *) WASMVOL_SOAK_N=$n WASMVOL_SOAK_DRIVER=$driver cargo bench -p wasmvol-bench --bench soak ;;
esac
# The plot: matplotlib from PyPI, in the build tree's venv.
py=target/py/bin/python
[ -x "$py" ] || python3 -m venv target/py
"$py" -c "import matplotlib" 2>/dev/null || target/py/bin/pip install -q matplotlib
"$py" scripts/soak-plot.py "target/soak-$driver.csv" "target/soak-$driver.png" \
  "wasmvol soak: $n $driver volumes over CSI, Flex beside"
echo "soak: plot in target/soak-$driver.png"
