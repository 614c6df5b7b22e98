#!/bin/sh
# Inside the test VM: a volume group kube_vg (4 GiB, on a loop device over a
# sparse file) with a thin pool pool0 (granted to the tests) and pool1 (not
# granted), and a second group other_vg (not granted). No udev runs in the
# guest: device-mapper is told not to wait for it.
set -e
export DM_DISABLE_UDEV=1
modprobe -a loop dm_mod dm_snapshot dm_thin_pool
mkdir -p /var/tmp/lvm
truncate -s 4G /var/tmp/lvm/kube.img
truncate -s 256M /var/tmp/lvm/other.img
kube=$(losetup -f --show /var/tmp/lvm/kube.img)
other=$(losetup -f --show /var/tmp/lvm/other.img)
pvcreate -q -y "$kube" "$other"
vgcreate -q kube_vg "$kube"
vgcreate -q other_vg "$other"
lvcreate -q -y -L 512M -T kube_vg/pool0
lvcreate -q -y -L 64M -T kube_vg/pool1
echo "lvm-setup: kube_vg on $kube, other_vg on $other"
