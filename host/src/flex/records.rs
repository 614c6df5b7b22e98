//! The Flex front end's records: what is attached, device-mounted and
//! mounted where, typed. Keys are built in one place (`Key`) from the
//! names kubelet passed; no record names a path the host derives from them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::placement::Placement;
use crate::store::records::{HostRecords, Persist, RecordError};

/// An attach of a volume to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// The driver's id of the volume.
    pub volume_id: String,
    /// The device the driver reported.
    pub device: String,
}

/// A device mount (node stage) at a kubelet dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMounted {
    /// Kubelet's name of the volume (the lock key of its calls).
    pub volume_name: String,
    /// The driver's id of the volume.
    pub volume_id: String,
}

/// A mount (node publish) at a pod's volume dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mounted {
    /// Kubelet's name of the volume (the lock key of its calls).
    #[serde(default)]
    pub volume_name: String,
    /// The driver's id of the volume.
    pub volume_id: String,
    /// Staging dir the host made for this mount (drivers that stage but do
    /// not attach), beneath the host's own staging root.
    pub host_staging: Option<PathBuf>,
    /// What the mount was asked for (a repeat must ask the same).
    #[serde(default)]
    pub placement: Option<Placement>,
}

/// Where each kind of record lives.
enum Key<'a> {
    Attach { volume: &'a str, node: &'a str },
    DeviceAt(&'a Path),
    DeviceOf(&'a str),
    MountAt(&'a Path),
}

impl Key<'_> {
    fn encode(&self) -> String {
        match self {
            Key::Attach { volume, node } => format!("attach/{volume}/{node}"),
            Key::DeviceAt(dir) => format!("device/{}", dir.display()),
            Key::DeviceOf(volume_id) => format!("device-of/{volume_id}"),
            Key::MountAt(dir) => format!("mount/{}", dir.display()),
        }
    }
}

/// The Flex records of one driver.
#[derive(Clone)]
pub struct FlexRecords(HostRecords);

impl FlexRecords {
    /// Records kept in `records` (the driver's `flex` namespace).
    pub fn new(records: HostRecords) -> Self {
        Self(records)
    }

    /// The attach of `volume` to `node`, if any.
    pub fn attached(&self, volume: &str, node: &str) -> Result<Option<Attached>, RecordError> {
        self.0.get(&Key::Attach { volume, node }.encode())
    }

    /// Records (or with `None` forgets) the attach of `volume` to `node`.
    pub fn set_attached(
        &self,
        volume: &str,
        node: &str,
        a: Option<&Attached>,
    ) -> Result<(), RecordError> {
        self.0
            .put(&Key::Attach { volume, node }.encode(), a, Persist::Durable)
    }

    /// The device mount at `dir`, if any.
    pub fn device_mounted(&self, dir: &Path) -> Result<Option<DeviceMounted>, RecordError> {
        self.0.get(&Key::DeviceAt(dir).encode())
    }

    /// The device mount dir of a volume, if it is device-mounted.
    pub fn device_dir_of(&self, volume_id: &str) -> Result<Option<PathBuf>, RecordError> {
        self.0.get(&Key::DeviceOf(volume_id).encode())
    }

    /// Records (or with `None` forgets) a device mount at `dir`, both ways.
    /// Durable: a host restarted between mountdevice and mount must know.
    /// The by-volume record is written first and the by-dir one last: a
    /// host killed between the two leaves the by-dir record as it was, so
    /// kubelet's retry (which looks the dir up) does the whole step again.
    pub fn set_device_mounted(
        &self,
        dir: &Path,
        volume_id: &str,
        d: Option<&DeviceMounted>,
    ) -> Result<(), RecordError> {
        self.0.put(
            &Key::DeviceOf(volume_id).encode(),
            d.map(|_| dir.to_path_buf()).as_ref(),
            Persist::Durable,
        )?;
        self.0
            .put(&Key::DeviceAt(dir).encode(), d, Persist::Durable)
    }

    /// At start, before any call: forgets the mount records (relaxed, so a
    /// crash can lose a removal) of dirs with nothing mounted on them
    /// (`mounted`: every mount point), except those that name a host
    /// staging dir, which the next unmount must still unstage. A key
    /// shortened to a digest names no path and is kept. Returns how many
    /// were forgotten.
    pub fn forget_unmounted(
        &self,
        mounted: &std::collections::HashSet<PathBuf>,
    ) -> Result<usize, RecordError> {
        let mut stale = Vec::new();
        for (key, m) in self.0.list::<Mounted>("mount/")? {
            let dir = key.strip_prefix("mount/").unwrap_or("");
            if m.host_staging.is_none()
                && !dir.contains("#sha256:")
                && !mounted.contains(Path::new(dir))
            {
                stale.push(key);
            }
        }
        for key in &stale {
            self.0.put::<Mounted>(key, None, Persist::Relaxed)?;
        }
        Ok(stale.len())
    }

    /// The mount at `dir`, if any.
    pub fn mounted(&self, dir: &Path) -> Result<Option<Mounted>, RecordError> {
        self.0.get(&Key::MountAt(dir).encode())
    }

    /// Records (or with `None` forgets) the mount at `dir`. Durable when the
    /// host staged for it (its staging mount must be found after a restart).
    pub fn set_mounted(&self, dir: &Path, m: Option<&Mounted>) -> Result<(), RecordError> {
        let persist = match m {
            Some(Mounted {
                host_staging: Some(_),
                ..
            }) => Persist::Durable,
            _ => Persist::Relaxed,
        };
        self.0.put(&Key::MountAt(dir).encode(), m, persist)
    }
}
