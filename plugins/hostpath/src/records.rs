//! hostpath's durable records, kept as JSON in the host's state store.

use serde::{Deserialize, Serialize};
use wasmvol_driver_sdk::{state, ContentSource, DriverError, Result, Snapshot, Timestamp, Volume};

/// A stable id for a CSI name: the same name always maps to the same id.
pub fn id_for(prefix: &str, name: &str) -> String {
    // FNV-1a, 64 bit, twice with different seeds: 128 bits, stable across builds.
    let hash = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    format!(
        "{prefix}-{:016x}{:016x}",
        hash(0xcbf2_9ce4_8422_2325),
        hash(0x6c62_272e_07bb_0142)
    )
}

fn decode<T: for<'a> Deserialize<'a>>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| DriverError::Internal(format!("record {key}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

fn load<T: for<'a> Deserialize<'a>>(key: &str) -> Result<Option<T>> {
    state::get(key)?.map(|b| decode(key, &b)).transpose()
}

fn all<T: for<'a> Deserialize<'a>>(prefix: &str) -> Result<Vec<T>> {
    state::list_prefix(prefix)?
        .into_iter()
        .map(|(k, v)| decode(&k, &v))
        .collect()
}

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

impl VolumeRecord {
    fn key(id: &str) -> String {
        format!("vol/{id}")
    }

    pub fn load(id: &str) -> Result<Option<Self>> {
        load(&Self::key(id))
    }

    pub fn all() -> Result<Vec<Self>> {
        all("vol/")
    }

    pub fn save(&self) -> Result<()> {
        state::put(&Self::key(&self.id), &encode(self))
    }

    pub fn delete(id: &str) -> Result<()> {
        state::delete(&Self::key(id))
    }

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
#[derive(Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: String,
    pub name: String,
    pub source: String,
    pub size: u64,
    pub created: (i64, u32),
}

impl SnapshotRecord {
    fn key(id: &str) -> String {
        format!("snap/{id}")
    }

    pub fn load(id: &str) -> Result<Option<Self>> {
        load(&Self::key(id))
    }

    pub fn all() -> Result<Vec<Self>> {
        all("snap/")
    }

    pub fn save(&self) -> Result<()> {
        state::put(&Self::key(&self.id), &encode(self))
    }

    pub fn delete(id: &str) -> Result<()> {
        state::delete(&Self::key(id))
    }

    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            snapshot_id: self.id.clone(),
            source_volume_id: self.source.clone(),
            size_bytes: self.size,
            creation_time: Timestamp {
                seconds: self.created.0,
                nanos: self.created.1,
            },
            ready_to_use: true,
        }
    }
}
