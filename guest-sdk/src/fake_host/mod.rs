//! An in-process stand-in for the wasmvol host, so `cargo test` on a driver
//! crate runs the driver's own code natively: no wasm build, no root, no
//! real mount. In a native build the SDK's capability modules ([`volumes`],
//! [`mount`], [`device`], [`lvm`], [`netfs`], [`tmpfs`], [`state`],
//! [`log`]) are this module's; a wasm build never contains it.
//!
//! Each test thread has its own world: [`FakeHost::new`] starts it with an
//! empty storage root in a temporary directory and an empty state store,
//! and ends it when dropped. Capabilities behave as the host's do where a
//! driver can tell (paths resolve beneath their root, `..` is refused,
//! repeats are idempotent, errors carry the same classes), and record what
//! they did so a test can look: what is mounted at each target, which loop
//! devices are attached, which logical volumes exist, what was logged.
//! A filesystem made on a backing file is a marker in the file's first
//! bytes, so copying the file copies the filesystem, as on the host.
//!
//! What it does not model: the operator's policy (every capability is
//! granted), the host's audit log, and the kernel's own behaviour behind a
//! mount. Those are the real host's, tested end to end against it.
//!
//! ```ignore
//! let host = FakeHost::new();
//! let volume = MyDriver::create_volume(request("pv-1"))?;
//! MyDriver::publish(host.target("pod", TargetRole::Publish, TargetShape::Directory), None, publish(&volume))?;
//! assert!(matches!(host.mounts("pod")[0].source, MountSource::Root(_)));
//! ```

/// The component glue a resource type has (what generated export code and
/// handle-forging test drivers call): a native build has no component
/// host, so none of it can run.
macro_rules! no_component_handles {
    ($ty:ty) => {
        impl $ty {
            /// Component glue only: a native build has no component handles.
            #[doc(hidden)]
            pub unsafe fn from_handle(_handle: u32) -> Self {
                unreachable!("a native build has no component host; use FakeHost")
            }

            /// Component glue only.
            #[doc(hidden)]
            pub fn take_handle(&self) -> u32 {
                unreachable!("a native build has no component host")
            }

            /// Component glue only.
            #[doc(hidden)]
            pub fn handle(&self) -> u32 {
                unreachable!("a native build has no component host")
            }
        }
    };
}
use no_component_handles;

pub mod device;
pub mod log;
pub mod lvm;
pub mod mount;
pub mod netfs;
pub mod requests;
pub mod state;
pub mod tmpfs;
pub mod volumes;
mod world;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use mount::{Mount, MountSource};
pub use world::LogLine;

use crate::{LogicalVolume, Target, TargetRole, TargetShape};

/// The fake host of the current test thread; dropping it ends the world
/// and removes its temporary directory.
pub struct FakeHost {
    dir: PathBuf,
}

impl FakeHost {
    /// Starts a fresh world on this thread: an empty storage root, state
    /// store, mount table, device list and log. Panics if one is running.
    pub fn new() -> Self {
        let dir = world::start();
        Self { dir }
    }

    /// The storage root on disk, to look at what the driver made there.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// A target handle as kubelet hands one over: `place` names the path
    /// (a retry of the same call hands over the same place again).
    pub fn target(&self, place: &str, role: TargetRole, shape: TargetShape) -> Target {
        world::with(|w| {
            let p = w
                .targets
                .entry(place.to_owned())
                .or_insert_with(|| world::Place {
                    role,
                    shape,
                    mounts: Vec::new(),
                });
            assert!(
                p.role == role && p.shape == shape,
                "target `{place}` was handed over before as {:?} {:?}",
                p.role,
                p.shape
            );
        });
        Target::at(place)
    }

    /// What is mounted at `place`, bottom first (empty: nothing).
    pub fn mounts(&self, place: &str) -> Vec<Mount> {
        world::with(|w| {
            w.targets
                .get(place)
                .map(|p| p.mounts.clone())
                .unwrap_or_default()
        })
    }

    /// Every target with something mounted, and what.
    pub fn mounted(&self) -> BTreeMap<String, Vec<Mount>> {
        world::with(|w| {
            w.targets
                .iter()
                .filter(|(_, p)| !p.mounts.is_empty())
                .map(|(name, p)| (name.clone(), p.mounts.clone()))
                .collect()
        })
    }

    /// The nodes of the loop devices attached now.
    pub fn attached_devices(&self) -> Vec<String> {
        world::with(|w| w.loops.iter().map(|l| l.node.clone()).collect())
    }

    /// Adds a volume group of `size_bytes` the `lvm` capability can use.
    pub fn add_volume_group(&self, group: &str, size_bytes: u64) {
        world::with(|w| {
            w.groups.insert(
                group.to_owned(),
                world::Group {
                    size: size_bytes,
                    volumes: BTreeMap::new(),
                },
            );
        });
    }

    /// The logical volumes of `group`, by name.
    pub fn logical_volumes(&self, group: &str) -> Vec<LogicalVolume> {
        world::with(|w| {
            w.groups
                .get(group)
                .map(|g| g.volumes.values().map(|v| v.listed.clone()).collect())
                .unwrap_or_default()
        })
    }

    /// The directory on disk standing for NFS export `export` of
    /// `server` (what `netfs.open-share` opens), made on first use.
    pub fn share_dir(&self, server: &str, export: &str) -> PathBuf {
        world::with(|w| w.share_dir(server, export))
    }

    /// The driver's durable state: every key and value.
    pub fn state(&self) -> BTreeMap<String, Vec<u8>> {
        world::with(|w| w.state.clone())
    }

    /// Every line the driver logged, in order.
    pub fn log(&self) -> Vec<LogLine> {
        world::with(|w| w.log.clone())
    }
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        world::end();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The error class of an I/O failure, as the host maps it.
pub(crate) fn io_error(what: &str, e: std::io::Error) -> crate::DriverError {
    use crate::DriverError as E;
    use std::io::ErrorKind::*;
    let msg = format!("{what}: {e}");
    match e.kind() {
        PermissionDenied => E::PermissionDenied(msg),
        NotFound => E::NotFound(msg),
        AlreadyExists => E::AlreadyExists(msg),
        InvalidInput | NotADirectory | IsADirectory | DirectoryNotEmpty => E::InvalidArgument(msg),
        StorageFull | QuotaExceeded => E::ResourceExhausted(msg),
        _ => E::Internal(msg),
    }
}

/// A relative path beneath a root, checked by its shape as the host does:
/// `..`, absolute paths and NUL are refused; "" and "." mean the root.
pub(crate) fn beneath(path: &str) -> Result<PathBuf, crate::DriverError> {
    use std::path::Component;
    if path.contains('\0') {
        return Err(crate::DriverError::InvalidArgument(
            "path contains NUL".into(),
        ));
    }
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(crate::DriverError::PermissionDenied(format!(
                    "path `{path}` leaves the storage root"
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{device, lvm, netfs, state, volumes, DriverError, FsType, MkfsOptions};

    #[test]
    fn paths_stay_beneath_the_root_and_nothing_is_made_outside() {
        let host = FakeHost::new();
        let root = volumes::open_root().unwrap();
        for bad in ["../escape", "/etc/escape", "a/../../escape"] {
            let e = root.create_dir(bad).unwrap_err();
            assert!(
                matches!(e, DriverError::PermissionDenied(_)),
                "{bad}: {e:?}"
            );
        }
        assert!(!host.dir.join("escape").exists());
        assert!(matches!(
            root.remove_tree(""),
            Err(DriverError::InvalidArgument(_))
        ));
        root.create_dir("a/b").unwrap();
        root.write_file("a/b/f", b"x").unwrap();
        assert_eq!(root.read_file("./a/b/f").unwrap(), b"x");
        assert!(matches!(
            root.copy("a", "a"),
            Err(DriverError::AlreadyExists(_))
        ));
        root.remove_tree("a").unwrap();
        root.remove_tree("a").unwrap();
        assert!(!host.root().join("a").exists());
    }

    #[test]
    fn mounts_stack_as_the_kernels_do() {
        let host = FakeHost::new();
        let root = volumes::open_root().unwrap();
        root.create_dir("v").unwrap();
        let t = host.target("t", TargetRole::Publish, TargetShape::Directory);
        t.bind_from_root(&root, "v", false).unwrap();
        t.bind_from_root(&root, "v", false).unwrap();
        t.remount_read_only().unwrap();
        let m = host.mounts("t");
        assert_eq!((m.len(), m[0].read_only, m[1].read_only), (2, false, true));
        t.unmount().unwrap();
        t.unmount().unwrap();
        t.unmount().unwrap();
        assert!(!t.is_mounted().unwrap());
        assert!(matches!(
            t.bind_from_root(&root, "missing", false),
            Err(DriverError::NotFound(_))
        ));
        assert!(matches!(
            t.bind_from_target(&t, false),
            Err(DriverError::InvalidArgument(_))
        ));
        // A share root is no storage root to bind from.
        let share = netfs::open_share(&crate::NfsShare {
            server: "s".into(),
            export_path: "/e".into(),
            version: crate::NfsVersion::V42,
            options: Vec::new(),
        })
        .unwrap();
        assert!(matches!(
            t.bind_from_root(&share, "", false),
            Err(DriverError::PermissionDenied(_))
        ));
        assert!(host.mounted().is_empty());
    }

    #[test]
    fn a_backing_file_attaches_once_and_its_filesystem_travels_with_a_copy() {
        let host = FakeHost::new();
        let root = volumes::open_root().unwrap();
        device::create_backing_file(&root, "img", 1 << 20).unwrap();
        assert!(matches!(
            device::create_backing_file(&root, "img", 1 << 20),
            Err(DriverError::AlreadyExists(_))
        ));
        let d = device::attach(&root, "img").unwrap();
        assert_eq!(device::attach(&root, "img").unwrap().node(), d.node());
        assert_eq!(host.attached_devices(), [d.node()]);
        d.make_filesystem(FsType::Ext4, &MkfsOptions { label: None })
            .unwrap();
        assert!(matches!(
            d.make_filesystem(FsType::Xfs, &MkfsOptions { label: None }),
            Err(DriverError::FailedPrecondition(_))
        ));
        d.detach().unwrap();
        assert!(host.attached_devices().is_empty());
        assert!(matches!(d.size(), Err(DriverError::FailedPrecondition(_))));
        root.copy("img", "copy").unwrap();
        let c = device::attach(&root, "copy").unwrap();
        assert_eq!(c.probe_filesystem().unwrap(), Some(FsType::Ext4));
        assert_eq!(c.size().unwrap(), 1 << 20);
        assert!(device::find_attached(&root, "img").unwrap().is_none());
        assert!(device::find_attached(&root, "never").unwrap().is_none());
    }

    #[test]
    fn volume_groups_bound_what_is_allocated_and_repeats_find_what_was_made() {
        let host = FakeHost::new();
        host.add_volume_group("vg", 100);
        lvm::create("vg", "a", 60, None).unwrap();
        lvm::create("vg", "a", 60, None).unwrap();
        assert!(matches!(
            lvm::create("vg", "a", 80, None),
            Err(DriverError::AlreadyExists(_))
        ));
        assert!(matches!(
            lvm::create("vg", "b", 60, None),
            Err(DriverError::ResourceExhausted(_))
        ));
        assert!(matches!(
            lvm::create("nope", "b", 1, None),
            Err(DriverError::NotFound(_))
        ));
        assert_eq!(lvm::free_bytes("vg").unwrap(), 40);
        lvm::snapshot("vg", "a", "s", Some(10)).unwrap();
        assert!(matches!(
            lvm::remove("vg", "a"),
            Err(DriverError::FailedPrecondition(_))
        ));
        lvm::remove("vg", "s").unwrap();
        lvm::remove("vg", "a").unwrap();
        lvm::remove("vg", "a").unwrap();
        assert!(host.logical_volumes("vg").is_empty());
    }

    #[test]
    fn state_swaps_only_what_it_expected() {
        let host = FakeHost::new();
        assert!(state::compare_and_swap("k", None, Some(b"1")).unwrap());
        assert!(!state::compare_and_swap("k", None, Some(b"2")).unwrap());
        assert!(state::compare_and_swap("k", Some(b"1"), Some(b"2")).unwrap());
        state::put("k2", b"x").unwrap();
        state::put("l", b"y").unwrap();
        let keys: Vec<String> = state::list_prefix("k")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["k", "k2"]);
        assert!(state::compare_and_swap("k", Some(b"2"), None).unwrap());
        assert_eq!(host.state().len(), 2);
    }

    #[test]
    #[should_panic(expected = "no fake host")]
    fn a_capability_with_no_fake_host_says_how_to_start_one() {
        let _ = state::get("k");
    }
}
