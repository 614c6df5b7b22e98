#!/bin/sh
# Inside the test VM: a kernel NFS server on the guest's loopback exporting
# /srv/nfs (NFSv3 and v4.x), with the NFSv4 grace period cut to 10 s, and
# host names for the tests (nfs.test is granted; outside.test resolves to
# an address outside the grant).
set -e
modprobe -a nfsd nfs nfsv3 nfsv4
mountpoint -q /proc/fs/nfsd || mount -t nfsd nfsd /proc/fs/nfsd
mkdir -p /srv/nfs /run/rpcbind /var/lib/nfs/rpc_pipefs
rpcbind -w
echo 10 > /proc/fs/nfsd/nfsv4gracetime
echo 10 > /proc/fs/nfsd/nfsv4leasetime
echo "/srv/nfs 127.0.0.1(rw,sync,no_subtree_check,no_root_squash,insecure)" > /etc/exports
exportfs -ra
rpc.mountd
rpc.nfsd 2
printf '127.0.0.1 nfs.test\n127.0.0.9 outside.test\n' >> /etc/hosts
echo "nfs-server: exporting /srv/nfs"
