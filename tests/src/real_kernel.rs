//! What the real-kernel VM sets up (`scripts/vm/nfs-server.sh`,
//! `scripts/vm/lvm-setup.sh`) and the grants its tests and benches give the
//! nfs and lvm drivers, in one place.

use wasmvol::policy::file::{LvmEntry, LvmGroupEntry, NetfsEntry};
use wasmvol::policy::StorageAccess;

use crate::FixtureGrants;

/// The directory the VM's NFS server exports.
pub const EXPORT: &str = "/srv/nfs";

/// The NFS grant: the VM's server (by address and by the names the tests
/// resolve), its one export, NFS 3 and 4.2, a few options.
pub fn netfs_grant() -> NetfsEntry {
    NetfsEntry {
        servers: vec![
            "127.0.0.1/32".into(),
            "nfs.test".into(),
            "outside.test".into(),
        ],
        exports: vec![EXPORT.into()],
        versions: vec!["3".into(), "4.2".into()],
        options: vec![
            "hard".into(),
            "timeo".into(),
            "nolock".into(),
            "noatime".into(),
        ],
        access: StorageAccess::ReadWrite,
    }
}

/// What the VM's drivers are granted beside their storage: mounts, no
/// storage root or state quota, CSI and/or Flex under `flex_name`.
fn vm_driver(csi: bool, flex: bool, flex_name: &'static str, deadline_ms: u64) -> FixtureGrants {
    FixtureGrants {
        mount: true,
        storage: None,
        state_quota: None,
        csi,
        flex,
        flex_name: flex.then_some(flex_name),
        deadline_ms,
        ..FixtureGrants::default()
    }
}

/// nfs's grants: mounts and the share, over CSI and/or Flex (`k8s/nfs`).
pub fn nfs_grants(csi: bool, flex: bool) -> FixtureGrants {
    FixtureGrants {
        netfs: Some(netfs_grant()),
        ..vm_driver(csi, flex, "k8s/nfs", 60_000)
    }
}

/// lvm's grants: mounts and `kube_vg` with its thin pool `pool0` (8 GiB at
/// most), over CSI and/or Flex (`kubernetes.io/lvm`).
pub fn lvm_grants(csi: bool, flex: bool) -> FixtureGrants {
    FixtureGrants {
        lvm: Some(LvmEntry {
            groups: vec![LvmGroupEntry {
                name: "kube_vg".into(),
                thin_pools: vec!["pool0".into()],
                max_bytes: 8 << 30,
            }],
        }),
        ..vm_driver(csi, flex, "kubernetes.io/lvm", 120_000)
    }
}
