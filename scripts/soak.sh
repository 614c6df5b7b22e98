#!/usr/bin/env bash
# Soak: N volumes (default 10000) of DRIVER (hostpath, the default, loopfs or
# scratch) through their CSI life at concurrency 8, the driver's Flex life
# beside them, sampling the host's RSS, descriptors and store size
# (benches/benches/soak.rs; samples in target/soak-DRIVER.csv, plotted to
# target/soak-DRIVER.png). As root.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
driver=${2:-hostpath}
scripts/build-plugins.sh
scripts/build-shim.sh
cargo build --release --bins
WASMVOL_SOAK_N=$n WASMVOL_SOAK_DRIVER=$driver cargo bench -p wasmvol-bench --bench soak
# The plot: matplotlib from PyPI, in the build tree's venv.
py=target/py/bin/python
[ -x "$py" ] || python3 -m venv target/py
"$py" -c "import matplotlib" 2>/dev/null || target/py/bin/pip install -q matplotlib
"$py" scripts/soak-plot.py "target/soak-$driver.csv" "target/soak-$driver.png" \
  "wasmvol soak: $n $driver volumes over CSI, Flex beside"
echo "soak: plot in target/soak-$driver.png"
