#!/usr/bin/env bash
# Runs the wasmvol host with the bundled example drivers.
#
# Builds the drivers and the host, writes a policy pinning the drivers'
# digests under $WASMVOL_HOME (default /var/lib/wasmvol-dev), and serves it:
# hostpath as CSI driver hostpath.csi.wasmvol.io on $WASMVOL_CSI_SOCKET
# (default /var/lib/kubelet/plugins/hostpath.csi.wasmvol.io/csi.sock), loopfs
# as loopfs.csi.wasmvol.io, and both to FlexVolume shims on
# /run/wasmvol/flex.sock (install a shim with `wasmvol flex install --shim
# target/flex-shim/wasmvol-flex --driver wasmvol/hostpath`).
set -euo pipefail
cd "$(dirname "$0")/.."
home=${WASMVOL_HOME:-/var/lib/wasmvol-dev}
socket=${WASMVOL_CSI_SOCKET:-/var/lib/kubelet/plugins/hostpath.csi.wasmvol.io/csi.sock}
loopfs_socket=${WASMVOL_LOOPFS_CSI_SOCKET:-/var/lib/kubelet/plugins/loopfs.csi.wasmvol.io/csi.sock}
scripts/build-plugins.sh
scripts/build-shim.sh
cargo build --release --bins
mkdir -p "$home/hostpath" "$home/loopfs"
command -v mkfs.xfs >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs e2fsprogs >/dev/null; }
digest() { sha256sum "$1" | cut -d' ' -f1; }
hostpath=$PWD/target/components/hostpath.wasm
loopfs=$PWD/target/components/loopfs.wasm
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
[driver.flex]
name = "wasmvol/hostpath"

[[driver]]
name = "loopfs"
component = "$loopfs"
sha256 = "$(digest "$loopfs")"
[driver.grants]
mount = true
state_quota_bytes = 4194304
storage = { root = "$home/loopfs", access = "read-write" }
device = { max_file_bytes = 107374182400 }
fs_types = ["ext4", "xfs"]
mount_options = ["noatime", "nodiratime", "discard"]
[driver.limits]
memory_bytes = 67108864
deadline_ms = 120000
concurrency = 16
[driver.csi]
name = "loopfs.csi.wasmvol.io"
socket = "$loopfs_socket"
[driver.flex]
name = "wasmvol/loopfs"
POLICY
echo "policy: $home/policy.toml"
exec target/release/wasmvol serve --config "$home/policy.toml"
