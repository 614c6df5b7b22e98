#!/usr/bin/env bash
# Runs the wasmvol host with the bundled example drivers.
#
# Builds the drivers and the host, writes a policy pinning the drivers'
# digests under $WASMVOL_HOME (default /var/lib/wasmvol-dev), and serves it:
# hostpath as CSI driver hostpath.csi.wasmvol.io on $WASMVOL_CSI_SOCKET
# (default /var/lib/kubelet/plugins/hostpath.csi.wasmvol.io/csi.sock), loopfs
# as loopfs.csi.wasmvol.io, scratch (tmpfs ephemeral inline volumes) as
# scratch.csi.wasmvol.io, and hostpath and loopfs to FlexVolume shims on
# /run/wasmvol/flex.sock (install a shim with `wasmvol flex install --shim
# target/flex-shim/wasmvol-flex --driver wasmvol/hostpath`).
set -euo pipefail
cd "$(dirname "$0")/.."
home=${WASMVOL_HOME:-/var/lib/wasmvol-dev}
socket=${WASMVOL_CSI_SOCKET:-/var/lib/kubelet/plugins/hostpath.csi.wasmvol.io/csi.sock}
loopfs_socket=${WASMVOL_LOOPFS_CSI_SOCKET:-/var/lib/kubelet/plugins/loopfs.csi.wasmvol.io/csi.sock}
scratch_socket=${WASMVOL_SCRATCH_CSI_SOCKET:-/var/lib/kubelet/plugins/scratch.csi.wasmvol.io/csi.sock}
say() { echo "run.sh: $*" >&2; }
say "building the drivers into wasm components (scripts/build-plugins.sh)"
scripts/build-plugins.sh
say "building the FlexVolume shim (scripts/build-shim.sh)"
scripts/build-shim.sh
say "building the host (cargo build --release --bins)"
cargo build --release --bins
mkdir -p "$home/hostpath" "$home/loopfs"
command -v mkfs.xfs >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs e2fsprogs >/dev/null; }
# The policy is built in code (wasmvol::policy::bundled), pinning today's digests.
target/release/wasmvol policy bundled --components "$PWD/target/components" --home "$home" \
  --hostpath-socket "$socket" --loopfs-socket "$loopfs_socket" --scratch-socket "$scratch_socket" \
  > "$home/policy.toml"
say "policy: $home/policy.toml; state and audit log: $home/state"
say "next, in another shell: target/release/wasmvol status --config $home/policy.toml"
say "  or a Flex shim: target/release/wasmvol flex install --shim target/flex-shim/wasmvol-flex --driver wasmvol/hostpath"
exec target/release/wasmvol serve --config "$home/policy.toml"
