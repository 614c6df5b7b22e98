#!/usr/bin/env bash
# Builds the real-kernel test VM's image, idempotently: a stock Debian
# kernel (which has NFS, device-mapper and the dm thin/snapshot targets that
# this machine's kernel lacks), a busybox initramfs and an ext4 root made by
# mmdebstrap with the NFS server and client, LVM and thin-provisioning tools.
#
# Everything lands in $WASMVOL_VM_CACHE (default /var/cache/wasmvol-vm),
# under a directory named by the digest of this recipe, so a changed recipe
# builds afresh and an unchanged one costs nothing. Prints that directory.
# Nothing is installed on the host but the tools (qemu, mmdebstrap, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${WASMVOL_VM_CACHE:-/var/cache/wasmvol-vm}
recipe=$(cat "$here/build-image.sh" "$here/initramfs-init" "$here/guest-init" | sha256sum | cut -c1-16)
out=$cache/$recipe
if [ -f "$out/ready" ]; then
  echo "$out"
  exit 0
fi
log() { echo "[vm-image $(date +%T)] $*" >&2; }

need=()
for tool in qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio \
            depmod:kmod mmdebstrap:mmdebstrap mkfs.ext4:e2fsprogs; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$cache/work-$recipe
rm -rf "$work"
mkdir -p "$work" "$cache"

# The kernel: the package linux-image-amd64 points at, unpacked, not installed.
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { apt-get update -qq; kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'); }
log "kernel $kpkg"
(cd "$work" && apt-get download -qq "$kpkg")
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
kver=${kpkg#linux-image-}
depmod -b "$work/kernel" "$kver"

# Modules the tests need, with their dependency closures.
modules_for() {
  for m in "$@"; do
    modprobe -d "$work/kernel" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | awk '!seen[$0]++'
}

# The initramfs: busybox, the modules to reach the root disk, an init.
log "initramfs"
ird=$work/initramfs
mkdir -p "$ird"/{bin,sbin,dev,proc,sys,newroot,lib/modules}
cp "$(command -v busybox)" "$ird/bin/busybox"
for a in sh mount umount insmod switch_root mkdir sleep cat echo; do ln -s busybox "$ird/bin/$a"; done
# The kernel's crypto request_module looks for /sbin/modprobe (ext4 needs crc32c).
ln -s ../bin/busybox "$ird/sbin/modprobe"
: > "$ird/modules.order"
for ko in $(modules_for virtio_pci virtio_blk crc32c_generic ext4); do
  cp "$ko" "$ird/lib/modules/"
  echo "/lib/modules/$(basename "$ko")" >> "$ird/modules.order"
done
cp "$here/initramfs-init" "$ird/init"
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.cpio.gz"

# The root: Debian bookworm with what NFS and LVM tests need.
log "root filesystem (mmdebstrap)"
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
mmdebstrap --quiet --variant=apt \
  --include=mount,kmod,iproute2,procps,nfs-kernel-server,nfs-common,rpcbind,lvm2,thin-provisioning-tools,e2fsprogs,xfsprogs,util-linux \
  bookworm "$work/rootfs" "$mirror"
mkdir -p "$work/rootfs/lib/modules/$kver"
cp -a "$work/kernel/lib/modules/$kver/." "$work/rootfs/lib/modules/$kver/"
depmod -b "$work/rootfs" "$kver"
# LVM with no udev in the guest.
sed -i -e 's/^\(\s*\)# *udev_sync = .*/\1udev_sync = 0/' -e 's/^\(\s*\)# *udev_rules = .*/\1udev_rules = 0/' \
       -e 's/^\(\s*\)# *monitoring = .*/\1monitoring = 0/' "$work/rootfs/etc/lvm/lvm.conf"
install -m 0755 "$here/guest-init" "$work/rootfs/lib/wasmvol-vm-init"
rm -rf "$work/rootfs/var/cache/apt/archives"/*.deb "$work/rootfs/var/lib/apt/lists"/*
log "root image"
mkfs.ext4 -q -F -L wasmvol-vm -d "$work/rootfs" "$work/root.img" 3G

mkdir -p "$out"
cp "$work"/kernel/boot/vmlinuz-* "$out/vmlinuz"
mv "$work/initrd.cpio.gz" "$work/root.img" "$out/"
echo "$kver" > "$out/kernel-version"
rm -rf "$work"
touch "$out/ready"
log "ready: $out"
echo "$out"
