#!/usr/bin/env bash
# Builds the wasmvol OCI image without a container daemon: the host and the
# Flex shim (release, stripped), the bundled components, and the tools the
# host runs (mkfs, fsck and grow for ext4 and xfs, blkid, lvm) with the
# shared libraries they load, as one layer written straight into an OCI
# image layout at target/image/oci (and target/image/wasmvol.oci.tar).
# Reproducible: sorted entries, fixed times and owners, gzip without names.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/build-plugins.sh >/dev/null
scripts/build-shim.sh >/dev/null
cargo build --release -q --bins
out=$root/target/image
rm -rf "$out"
rootfs=$out/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/opt/wasmvol/components" "$rootfs/tmp" "$rootfs/etc"
# The tools the host runs, each with the libraries it loads, at their paths.
need=()
for tool in mkfs.ext4:e2fsprogs mkfs.xfs:xfsprogs blkid:util-linux lvm:lvm2 strip:binutils gzip:gzip; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
strip --strip-all -o "$rootfs/usr/local/bin/wasmvol" target/release/wasmvol
# The shim as kubelet execs it: static where static glibc is at hand.
strip --strip-all -o "$rootfs/usr/local/bin/wasmvol-flex" target/flex-shim/wasmvol-flex
cp target/components/{hostpath,loopfs,nfs,scratch,lvm}.wasm "$rootfs/opt/wasmvol/components/"
chmod 1777 "$rootfs/tmp"
copy() {
  local f=$1
  [ -e "$rootfs$f" ] && return
  mkdir -p "$rootfs$(dirname "$f")"
  cp -L "$f" "$rootfs$f"
}
binaries=("$rootfs/usr/local/bin/wasmvol" "$rootfs/usr/local/bin/wasmvol-flex")
for tool in mkfs.ext4 e2fsck resize2fs mkfs.xfs xfs_repair xfs_growfs blkid lvm; do
  path=$(command -v "$tool")
  copy "$path"
  binaries+=("$rootfs$path")
done
for b in "${binaries[@]}"; do
  for lib in $(ldd "$b" 2>/dev/null | grep -Eo '/[^ ]+\.so[^ ]*' | sort -u); do
    copy "$lib"
  done
done
# xfs_growfs is a shell script on Debian: it needs a shell and xfs_io.
if head -c 2 "$rootfs$(command -v xfs_growfs)" | grep -q '#!'; then
  for extra in /bin/sh /usr/sbin/xfs_io; do
    [ -e "$extra" ] || continue
    copy "$(readlink -f "$extra")"
    for lib in $(ldd "$extra" 2>/dev/null | grep -Eo '/[^ ]+\.so[^ ]*' | sort -u); do copy "$lib"; done
    [ "$extra" = /bin/sh ] && { mkdir -p "$rootfs/bin"; [ -e "$rootfs/bin/sh" ] || cp -L /bin/sh "$rootfs/bin/sh"; }
  done
fi

# One layer, then the OCI layout.
oci=$out/oci
mkdir -p "$oci/blobs/sha256"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$out/layer.tar" .
diff_id=$(sha256sum "$out/layer.tar" | cut -d' ' -f1)
gzip -n -9 -c "$out/layer.tar" > "$out/layer.tar.gz"
layer=$(sha256sum "$out/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$out/layer.tar.gz")
mv "$out/layer.tar.gz" "$oci/blobs/sha256/$layer"
version=$(target/release/wasmvol --version | awk '{print $2}')
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/usr/local/bin/wasmvol"],"Env":["PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Labels":{"org.opencontainers.image.title":"wasmvol","org.opencontainers.image.version":"%s"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$version" "$diff_id" > "$out/config.json"
config=$(sha256sum "$out/config.json" | cut -d' ' -f1)
config_size=$(stat -c %s "$out/config.json")
mv "$out/config.json" "$oci/blobs/sha256/$config"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config" "$config_size" "$layer" "$layer_size" > "$out/manifest.json"
manifest=$(sha256sum "$out/manifest.json" | cut -d' ' -f1)
manifest_size=$(stat -c %s "$out/manifest.json")
mv "$out/manifest.json" "$oci/blobs/sha256/$manifest"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest" "$manifest_size" "$version" > "$oci/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$oci/oci-layout"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$oci" -cf "$out/wasmvol.oci.tar" .
rm -f "$out/layer.tar"
echo "build-image: $out/wasmvol.oci.tar (layer $layer_size bytes compressed, $(du -sb "$rootfs" | cut -f1) bytes unpacked)"
