//! hostpath's durable records, kept as JSON in the host's state store.

use serde::{Deserialize, Serialize};
use wasmvol_driver_sdk::records::{Deletable, Record};
use wasmvol_driver_sdk::{ContentSource, Volume};

/// Content source as stored (the WIT type has no serde).
#[derive(Serialize, Deserialize, Clone, PartialEq)]
enum Source {
    Snapshot(String),
    Volume(String),
}

/// A provisioned volume.
#[derive(Serialize, Deserialize)]
pub struct VolumeRecord {
    pub id: String,
    pub name: String,
    pub capacity: u64,
    #[serde(with = "source")]
    pub source: Option<ContentSource>,
    /// Mutable parameter `readOnly`: every publish is read-only.
    #[serde(default)]
    pub read_only: bool,
    /// A delete has begun ([`Deletable`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
}

mod source {
    use super::Source;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use wasmvol_driver_sdk::ContentSource;

    pub fn serialize<S: Serializer>(v: &Option<ContentSource>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref()
            .map(|c| match c {
                ContentSource::Snapshot(id) => Source::Snapshot(id.clone()),
                ContentSource::Volume(id) => Source::Volume(id.clone()),
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ContentSource>, D::Error> {
        Ok(Option::<Source>::deserialize(d)?.map(|s| match s {
            Source::Snapshot(id) => ContentSource::Snapshot(id),
            Source::Volume(id) => ContentSource::Volume(id),
        }))
    }
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
    pub fn to_volume(&self) -> Volume {
        Volume {
            volume_id: self.id.clone(),
            capacity_bytes: self.capacity,
            volume_context: Vec::new(),
            content_source: self.source.clone(),
            accessible_topology: Vec::new(),
        }
    }
}

/// A snapshot (a full copy of its source volume).
pub type SnapshotRecord = wasmvol_driver_sdk::records::SnapshotRecord;
