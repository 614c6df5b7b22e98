#!/usr/bin/env bash
# Runs the wasmvol host with the bundled example drivers.
#
# Builds the drivers and the host, writes a policy pinning the drivers'
# digests under $WASMVOL_HOME (default /var/lib/wasmvol-dev), and serves it:
# hostpath as CSI driver hostpath.csi.wasmvol.io on $WASMVOL_CSI_SOCKET
# (default /var/lib/kubelet/plugins/hostpath.csi.wasmvol.io/csi.sock).
set -euo pipefail
cd "$(dirname "$0")/.."
home=${WASMVOL_HOME:-/var/lib/wasmvol-dev}
socket=${WASMVOL_CSI_SOCKET:-/var/lib/kubelet/plugins/hostpath.csi.wasmvol.io/csi.sock}
scripts/build-plugins.sh
cargo build --release --bins
mkdir -p "$home/hostpath"
digest() { sha256sum "$1" | cut -d' ' -f1; }
hostpath=$PWD/target/components/hostpath.wasm
cat > "$home/policy.toml" <<POLICY
# Written by scripts/run.sh: the bundled drivers, pinned by digest.
[host]
state_dir = "$home/state"

[[driver]]
name = "hostpath"
component = "$hostpath"
sha256 = "$(digest "$hostpath")"
[driver.grants]
mount = true
state_quota_bytes = 4194304
storage = { root = "$home/hostpath", access = "read-write" }
[driver.limits]
memory_bytes = 67108864
deadline_ms = 10000
concurrency = 16
[driver.csi]
name = "hostpath.csi.wasmvol.io"
socket = "$socket"
POLICY
echo "policy: $home/policy.toml"
exec target/release/wasmvol serve --config "$home/policy.toml"
