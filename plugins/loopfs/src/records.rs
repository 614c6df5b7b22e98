//! loopfs's durable records.

use serde::{Deserialize, Serialize};
use wasmvol_driver_sdk::records::{Deletable, Record};
use wasmvol_driver_sdk::{ids, Result, Volume};

/// A provisioned block volume: a sparse backing file `volumes/<id>.img`.
#[derive(Serialize, Deserialize)]
pub struct VolumeRecord {
    pub id: String,
    pub name: String,
    pub capacity: u64,
    /// "ext4" or "xfs": the filesystem made at first stage (mount access).
    pub fs: String,
    /// `snapshot:<id>` or `volume:<id>` when created from one.
    pub source: Option<String>,
    /// Mutable parameter `readOnly`: every publish is read-only.
    #[serde(default)]
    pub read_only: bool,
    /// A delete has begun ([`Deletable`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
}

impl Record for VolumeRecord {
    const PREFIX: &'static str = "vol/";

    fn id(&self) -> &str {
        &self.id
    }
}

impl Deletable for VolumeRecord {
    fn deleting(&self) -> bool {
        self.deleting
    }

    fn mark_deleting(&mut self) {
        self.deleting = true;
    }
}

impl VolumeRecord {
    pub fn file(&self) -> Result<String> {
        volume_file(&self.id)
    }
    pub fn to_volume(&self) -> Volume {
        Volume {
            volume_id: self.id.clone(),
            capacity_bytes: self.capacity,
            volume_context: Vec::new(),
            content_source: None,
            accessible_topology: Vec::new(),
        }
    }
}

/// The backing file of a volume.
pub fn volume_file(id: &str) -> Result<String> {
    ids::path_under("volumes", id, ".img")
}

/// The backing file copy of a snapshot.
pub fn snapshot_file(id: &str) -> Result<String> {
    ids::path_under("snapshots", id, ".img")
}

/// What loopfs keeps beside the common snapshot fields: the filesystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotFs {
    pub fs: String,
}

/// A snapshot: a copy of the backing file.
pub type SnapshotRecord = wasmvol_driver_sdk::records::SnapshotRecord<SnapshotFs>;
