//! The one capability table: what a policy can grant ([`Capability`]), what
//! one use needs ([`Need`]), and every capability operation a driver can
//! call ([`CapOp`]) with its audit name, the grants it needs and whether it
//! may block.
//!
//! Redaction is by construction: each operation audits its arguments with
//! contents as byte counts (file contents, state values), never the bytes,
//! and [`redact`](crate::audit::redact) blanks every `secrets` field.
//!
//! The load-time import check, [`CallContext::gate`](crate::capability::context::CallContext::gate)
//! and `wasmvol audit` all read this table, so a grant is named, checked
//! and reported the same way everywhere.

use crate::policy::{Grants, StorageAccess};
use crate::sys::fstools::Fs;

/// One kind of authority a policy grants a driver. Everything absent is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `grants.storage`: a directory beneath which the driver's paths resolve (`volumes`).
    Storage,
    /// `grants.mount`: mounting onto the target handles of a request (`mount`).
    Mount,
    /// `grants.state_quota_bytes`: durable key-value state (`state`).
    State,
    /// `grants.device`: loop devices over backing files, and filesystem tools (`device`).
    Device,
    /// `grants.secrets`: the secrets callers send reach the driver.
    Secrets,
    /// `grants.netfs`: mounting granted NFS exports (`netfs`).
    Netfs,
    /// `grants.tmpfs`: mounting size-limited tmpfs filesystems (`tmpfs`).
    Tmpfs,
    /// `grants.lvm`: logical volumes in granted volume groups (`lvm`).
    Lvm,
}

impl Capability {
    /// Every capability, in report order.
    pub const ALL: [Capability; 8] = [
        Capability::Storage,
        Capability::Mount,
        Capability::State,
        Capability::Device,
        Capability::Secrets,
        Capability::Netfs,
        Capability::Tmpfs,
        Capability::Lvm,
    ];

    /// Short name, as reports and audit summaries spell it.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Storage => "storage",
            Capability::Mount => "mount",
            Capability::State => "state",
            Capability::Device => "device",
            Capability::Secrets => "secrets",
            Capability::Netfs => "netfs",
            Capability::Tmpfs => "tmpfs",
            Capability::Lvm => "lvm",
        }
    }

    /// The policy key that grants it.
    pub fn grant_key(self) -> &'static str {
        match self {
            Capability::Storage => "grants.storage",
            Capability::Mount => "grants.mount",
            Capability::State => "grants.state_quota_bytes",
            Capability::Device => "grants.device",
            Capability::Secrets => "grants.secrets",
            Capability::Netfs => "grants.netfs",
            Capability::Tmpfs => "grants.tmpfs",
            Capability::Lvm => "grants.lvm",
        }
    }

    /// The capability a `wasmvol:driver` interface's functions need, by the
    /// interface's bare name; `None` for interfaces that need none (`log`,
    /// `types`) and for names that are not capability interfaces.
    pub fn of_interface(interface: &str) -> Option<Self> {
        match interface {
            "volumes" => Some(Capability::Storage),
            "mount" => Some(Capability::Mount),
            "state" => Some(Capability::State),
            "device" => Some(Capability::Device),
            "netfs" => Some(Capability::Netfs),
            "tmpfs" => Some(Capability::Tmpfs),
            "lvm" => Some(Capability::Lvm),
            _ => None,
        }
    }

    /// Whether `grants` give this capability.
    pub fn granted_by(self, grants: &Grants) -> bool {
        match self {
            Capability::Storage => grants.storage.is_some(),
            Capability::Mount => grants.mount,
            Capability::State => grants.state_quota_bytes.is_some(),
            Capability::Device => grants.device.is_some(),
            Capability::Secrets => grants.secrets,
            Capability::Netfs => grants.netfs.is_some(),
            Capability::Tmpfs => grants.tmpfs.is_some(),
            Capability::Lvm => grants.lvm.is_some(),
        }
    }

    /// The capabilities `grants` give, in report order.
    pub fn granted(grants: &Grants) -> Vec<Capability> {
        Self::ALL
            .into_iter()
            .filter(|c| c.granted_by(grants))
            .collect()
    }
}

/// What one capability use needs from the driver's grants. An operation's
/// fixed needs come from [`CapOp::needs`]; those that depend on its
/// arguments (a filesystem, a mount option, a size) are added per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Read the storage root.
    StorageRead,
    /// Write the storage root (it is granted `read-write`).
    StorageWrite,
    /// Mount onto request targets.
    Mount,
    /// Use durable state.
    State,
    /// Backing files and loop devices.
    Device,
    /// Make, check, grow or mount this filesystem (`grants.fs_types`).
    FsType(Fs),
    /// Pass this mount option (`grants.mount_options`).
    MountOption(&'a str),
    /// A backing file of this many bytes (`grants.device.max_file_bytes`).
    FileBytes(u64),
    /// NFS exports.
    Netfs,
    /// Write an NFS share opened as a root (`grants.netfs.access`).
    ShareWrite,
    /// tmpfs mounts.
    Tmpfs,
    /// A tmpfs of this many bytes (`grants.tmpfs.max_bytes`).
    TmpfsBytes(u64),
    /// Logical volumes.
    Lvm,
    /// This volume group (`grants.lvm.groups`).
    LvmGroup(&'a str),
    /// This thin pool of this group (`grants.lvm.groups[].thin_pools`).
    ThinPool(&'a str, &'a str),
}

impl Need<'_> {
    /// What this need becomes for an operation on an NFS share opened as a
    /// root (`netfs.open-share`) instead of the storage root: reads need
    /// the netfs grant, writes its `read-write` access.
    pub fn on_share(self) -> Self {
        match self {
            Need::StorageRead => Need::Netfs,
            Need::StorageWrite => Need::ShareWrite,
            other => other,
        }
    }

    /// What this need becomes for a `device` operation on a logical volume
    /// (`lvm.open`) instead of a loop device: the lvm grant.
    pub fn on_lv(self) -> Self {
        match self {
            Need::Device => Need::Lvm,
            other => other,
        }
    }

    /// `Ok` when `grants` meet this need, else why not (the audit record's outcome).
    pub fn check(self, grants: &Grants) -> Result<(), String> {
        // The reason is formatted only on a denial: granted needs are the hot path.
        let yes = |granted: bool, why: &dyn Fn() -> String| {
            if granted {
                Ok(())
            } else {
                Err(why())
            }
        };
        match self {
            Need::StorageRead => yes(grants.storage.is_some(), &|| "no storage grant".into()),
            Need::StorageWrite => match &grants.storage {
                Some(s) if s.access == StorageAccess::ReadWrite => Ok(()),
                Some(_) => Err("storage root is granted read-only".into()),
                None => Err("no storage grant".into()),
            },
            Need::Mount => yes(grants.mount, &|| "no mount grant".into()),
            Need::State => yes(grants.state_quota_bytes.is_some(), &|| {
                "no state grant".into()
            }),
            Need::Device => yes(grants.device.is_some(), &|| "no device grant".into()),
            Need::FsType(fs) => yes(grants.fs_types.contains(&fs), &|| {
                format!("filesystem {} is not in grants.fs_types", fs.name())
            }),
            Need::MountOption(o) => yes(grants.mount_options.contains(o), &|| {
                format!("mount option `{o}` is not in grants.mount_options")
            }),
            Need::Netfs => yes(grants.netfs.is_some(), &|| "no netfs grant".into()),
            Need::ShareWrite => match &grants.netfs {
                Some(n) if n.access == StorageAccess::ReadWrite => Ok(()),
                Some(_) => Err("NFS shares are granted read-only".into()),
                None => Err("no netfs grant".into()),
            },
            Need::Tmpfs => yes(grants.tmpfs.is_some(), &|| "no tmpfs grant".into()),
            Need::TmpfsBytes(size) => {
                let max = grants.tmpfs.map_or(0, |t| t.max_bytes);
                yes(size <= max, &|| {
                    format!("{size} bytes exceeds grants.tmpfs.max_bytes ({max})")
                })
            }
            Need::Lvm => yes(grants.lvm.is_some(), &|| "no lvm grant".into()),
            Need::LvmGroup(vg) => yes(
                grants.lvm.as_ref().is_some_and(|l| l.group(vg).is_some()),
                &|| format!("volume group `{vg}` is not in grants.lvm.groups"),
            ),
            Need::ThinPool(vg, pool) => yes(
                grants
                    .lvm
                    .as_ref()
                    .and_then(|l| l.group(vg))
                    .is_some_and(|g| g.thin_pools.iter().any(|p| p.as_str() == pool)),
                &|| format!("thin pool `{vg}/{pool}` is not granted"),
            ),
            Need::FileBytes(size) => {
                let max = grants.device.map_or(0, |d| d.max_file_bytes);
                yes(size <= max, &|| {
                    format!("{size} bytes exceeds grants.device.max_file_bytes ({max})")
                })
            }
        }
    }
}

impl Need<'_> {
    /// The capability (grant) this need draws on.
    pub fn capability(&self) -> Capability {
        match self {
            Need::StorageRead | Need::StorageWrite => Capability::Storage,
            Need::Mount | Need::MountOption(_) => Capability::Mount,
            Need::State => Capability::State,
            Need::Device | Need::FileBytes(_) | Need::FsType(_) => Capability::Device,
            Need::Netfs | Need::ShareWrite => Capability::Netfs,
            Need::Tmpfs | Need::TmpfsBytes(_) => Capability::Tmpfs,
            Need::Lvm | Need::LvmGroup(_) | Need::ThinPool(..) => Capability::Lvm,
        }
    }
}

/// Declares [`CapOp`] from one table: per operation its audit name, fixed
/// needs and whether it may block.
macro_rules! cap_ops {
    ($($op:ident => $name:literal, [$($need:ident),*], $blocks:ident;)*) => {
        /// Every capability operation a driver can call.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum CapOp {
            $(#[doc = concat!("`", $name, "`.")] $op,)*
        }

        impl CapOp {
            /// Every operation, in table order.
            pub const ALL: &'static [CapOp] = &[$(CapOp::$op,)*];

            /// The operation an audit record names (`volumes.create-dir`).
            pub fn from_name(name: &str) -> Option<CapOp> {
                Self::ALL.iter().copied().find(|op| op.name() == name)
            }

            /// The name audit records and reports use, `interface.function`.
            pub fn name(self) -> &'static str {
                match self { $(CapOp::$op => $name,)* }
            }

            /// What the operation needs whatever its arguments.
            pub fn needs(self) -> &'static [Need<'static>] {
                match self { $(CapOp::$op => &[$(Need::$need),*],)* }
            }

            /// Whether it may block for long (device work and the tools it
            /// runs, walks of trees, file contents, durable commits). Before
            /// one, a call running in place on a tokio worker lets go of the
            /// task waiting on that worker (see [`crate::runtime::sync_calls`]).
            pub fn may_block(self) -> bool {
                match self { $(CapOp::$op => cap_ops!(@blocks $blocks),)* }
            }
        }
    };
    (@blocks quick) => { false };
    (@blocks blocks) => { true };
}

cap_ops! {
    VolumesOpenRoot => "volumes.open-root", [StorageRead], quick;
    VolumesCreateDir => "volumes.create-dir", [StorageWrite], quick;
    VolumesRemoveTree => "volumes.remove-tree", [StorageWrite], blocks;
    VolumesRemoveFile => "volumes.remove-file", [StorageWrite], quick;
    VolumesListDir => "volumes.list-dir", [StorageRead], blocks;
    VolumesRename => "volumes.rename", [StorageWrite], quick;
    VolumesCopy => "volumes.copy", [StorageWrite], blocks;
    VolumesExists => "volumes.exists", [StorageRead], quick;
    VolumesWriteFile => "volumes.write-file", [StorageWrite], blocks;
    VolumesReadFile => "volumes.read-file", [StorageRead], blocks;
    VolumesStatvfs => "volumes.statvfs", [StorageRead], quick;
    VolumesUsage => "volumes.usage", [StorageRead], blocks;
    MountIsMounted => "mount.is-mounted", [], quick;
    MountStatvfs => "mount.statvfs", [], quick;
    MountBindFromRoot => "mount.bind-from-root", [Mount, StorageRead], quick;
    MountBindFromTarget => "mount.bind-from-target", [Mount], quick;
    MountRemountReadOnly => "mount.remount-read-only", [Mount], quick;
    MountUnmount => "mount.unmount", [Mount], quick;
    StateGet => "state.get", [State], quick;
    StatePut => "state.put", [State], blocks;
    StateDelete => "state.delete", [State], blocks;
    StateListPrefix => "state.list-prefix", [State], quick;
    StateCompareAndSwap => "state.compare-and-swap", [State], blocks;
    DeviceCreateBackingFile => "device.create-backing-file", [Device, StorageWrite], blocks;
    DeviceGrowBackingFile => "device.grow-backing-file", [Device, StorageWrite], blocks;
    DeviceAttach => "device.attach", [Device, StorageWrite], blocks;
    DeviceFindAttached => "device.find-attached", [Device, StorageRead], blocks;
    DeviceNode => "device.node", [Device], quick;
    DeviceSize => "device.size", [Device], blocks;
    DeviceRefreshSize => "device.refresh-size", [Device], blocks;
    DeviceDetach => "device.detach", [Device], blocks;
    DeviceMakeFilesystem => "device.make-filesystem", [Device], blocks;
    DeviceProbeFilesystem => "device.probe-filesystem", [Device], blocks;
    DeviceCheckFilesystem => "device.check-filesystem", [Device], blocks;
    DeviceGrowFilesystem => "device.grow-filesystem", [Device], blocks;
    DeviceMountOnto => "device.mount-onto", [Device, Mount], blocks;
    DeviceBindNodeOnto => "device.bind-node-onto", [Device, Mount], blocks;
    NetfsMountOnto => "netfs.mount-onto", [Netfs, Mount], blocks;
    NetfsOpenShare => "netfs.open-share", [Netfs], blocks;
    TmpfsMountOnto => "tmpfs.mount-onto", [Tmpfs, Mount], quick;
    LvmCreate => "lvm.create", [Lvm], blocks;
    LvmSnapshot => "lvm.snapshot", [Lvm], blocks;
    LvmExtend => "lvm.extend", [Lvm], blocks;
    LvmCopy => "lvm.copy", [Lvm], blocks;
    LvmRemove => "lvm.remove", [Lvm], blocks;
    LvmListVolumes => "lvm.list-volumes", [Lvm], blocks;
    LvmFreeBytes => "lvm.free-bytes", [Lvm], blocks;
    LvmOpen => "lvm.open", [Lvm], blocks;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DeviceGrant, StorageGrant};

    /// The capabilities an operation's fixed needs call for.
    fn capabilities(op: CapOp) -> Vec<Capability> {
        let mut caps: Vec<Capability> = op.needs().iter().map(Need::capability).collect();
        caps.sort();
        caps.dedup();
        caps
    }

    #[test]
    fn names_are_unique_and_name_their_interface() {
        let mut names: Vec<&str> = CapOp::ALL.iter().map(|o| o.name()).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "two operations share a name");
        for op in CapOp::ALL {
            let iface = op.name().split('.').next().unwrap();
            assert!(Capability::of_interface(iface).is_some(), "{}", op.name());
            // Every operation that touches the host needs its interface's grant,
            // except reads of the request's own handles.
            let own = Capability::of_interface(iface).unwrap();
            assert!(
                capabilities(*op).contains(&own)
                    || matches!(op, CapOp::MountIsMounted | CapOp::MountStatvfs),
                "{} does not need {own:?}",
                op.name()
            );
        }
    }

    #[test]
    fn each_need_is_checked_against_its_grant() {
        let none = Grants::default();
        for need in [
            Need::StorageRead,
            Need::StorageWrite,
            Need::Mount,
            Need::State,
            Need::Device,
            Need::FsType(Fs::Ext4),
            Need::MountOption("noatime"),
            Need::Netfs,
            Need::ShareWrite,
            Need::Tmpfs,
            Need::TmpfsBytes(1),
            Need::Lvm,
            Need::LvmGroup("vg"),
            Need::ThinPool("vg", "pool"),
            Need::FileBytes(1),
        ] {
            assert!(need.check(&none).is_err(), "{need:?} passes with no grants");
        }
        let read_only = Grants {
            storage: Some(StorageGrant {
                root: "/r".into(),
                access: StorageAccess::ReadOnly,
                wasi_preopen: false,
            }),
            device: Some(DeviceGrant {
                max_file_bytes: 10,
                max_devices: 1,
            }),
            fs_types: [Fs::Ext4].into(),
            mount_options: ["noatime".to_owned()].into(),
            ..Grants::default()
        };
        assert!(Need::StorageRead.check(&read_only).is_ok());
        assert_eq!(
            Need::StorageWrite.check(&read_only).unwrap_err(),
            "storage root is granted read-only"
        );
        assert!(Need::FsType(Fs::Ext4).check(&read_only).is_ok());
        assert!(Need::FsType(Fs::Xfs).check(&read_only).is_err());
        assert!(Need::MountOption("noatime").check(&read_only).is_ok());
        assert!(Need::MountOption("dev").check(&read_only).is_err());
        assert!(Need::FileBytes(10).check(&read_only).is_ok());
        assert!(Need::FileBytes(11).check(&read_only).is_err());
        let shares = Grants {
            tmpfs: Some(crate::policy::TmpfsGrant { max_bytes: 4096 }),
            netfs: Some(crate::nfs::NetfsGrant {
                names: Default::default(),
                addresses: vec![crate::nfs::AddressRange::parse("127.0.0.1").unwrap()],
                exports: vec![crate::nfs::ExportPath::parse("/srv").unwrap()],
                versions: [crate::nfs::NfsVersion::V4_2].into(),
                options: Default::default(),
                access: StorageAccess::ReadOnly,
            }),
            ..Grants::default()
        };
        assert!(Need::TmpfsBytes(4096).check(&shares).is_ok());
        assert!(Need::TmpfsBytes(4097).check(&shares).is_err());
        // On a share root, storage needs become the share's.
        assert!(Need::StorageRead.on_share().check(&shares).is_ok());
        assert_eq!(
            Need::StorageWrite.on_share().check(&shares).unwrap_err(),
            "NFS shares are granted read-only"
        );
    }

    #[test]
    fn capabilities_follow_the_grants() {
        let g = Grants {
            mount: true,
            secrets: true,
            ..Grants::default()
        };
        assert_eq!(
            Capability::granted(&g),
            vec![Capability::Mount, Capability::Secrets]
        );
        assert_eq!(
            capabilities(CapOp::DeviceMountOnto),
            vec![Capability::Mount, Capability::Device]
        );
    }
}
