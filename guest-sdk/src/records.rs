//! JSON records in the driver's durable state (feature `json`): the usual
//! way a driver remembers its volumes and snapshots.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{state, DriverError, Result};

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| DriverError::Internal(format!("record {key}: {e}")))
}

/// The record at `key`, if any.
pub fn load<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    state::get(key)?.map(|b| decode(key, &b)).transpose()
}

/// Every record under `prefix`, in key order.
pub fn all<T: DeserializeOwned>(prefix: &str) -> Result<Vec<T>> {
    state::list_prefix(prefix)?
        .into_iter()
        .map(|(k, v)| decode(&k, &v))
        .collect()
}

/// Writes a record (durably, before the call returns).
pub fn save<T: Serialize>(key: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| DriverError::Internal(format!("record {key}: {e}")))?;
    state::put(key, &bytes)
}

/// Removes a record (absent is fine).
pub fn delete(key: &str) -> Result<()> {
    state::delete(key)
}

/// A stable id for a CSI name: the same name always maps to the same id, so
/// a repeated create finds what the first one made.
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

/// A kind of record kept under one key prefix, by id.
pub trait Record: Serialize + DeserializeOwned {
    /// Key prefix, e.g. `"vol/"`.
    const PREFIX: &'static str;

    /// This record's id (the key is `PREFIX` + id).
    fn id(&self) -> &str;

    /// The record with this id, if there is one.
    fn load(id: &str) -> Result<Option<Self>> {
        load(&format!("{}{id}", Self::PREFIX))
    }

    /// Every record of this kind, in id order.
    fn all() -> Result<Vec<Self>> {
        all(Self::PREFIX)
    }

    /// Writes the record under its id (durably).
    fn save(&self) -> Result<()> {
        save(&format!("{}{}", Self::PREFIX, self.id()), self)
    }

    /// Removes the record with this id (none there is success).
    fn delete(id: &str) -> Result<()> {
        delete(&format!("{}{id}", Self::PREFIX))
    }
}

/// A record whose deletion spans more than one step (remove the storage,
/// then the record), and so can be cut off between them by a host crash.
///
/// The delete marks the record first ([`Self::begin_delete`]); from then on
/// the volume is gone to every reader ([`Self::find`], [`Self::live`]): a
/// listing never shows a volume whose storage is half removed, and
/// kubelet's retry of the delete finishes the job. A create of the same
/// name finds the mark and must finish the delete before making anew.
pub trait Deletable: Record {
    /// Whether a delete of this record has begun.
    fn deleting(&self) -> bool;

    /// Marks the record as being deleted (saved by [`Self::begin_delete`]).
    fn mark_deleting(&mut self);

    /// The record with this id, unless there is none or its delete has begun.
    fn find(id: &str) -> Result<Option<Self>> {
        Ok(Self::load(id)?.filter(|r| !r.deleting()))
    }

    /// Every record of this kind whose delete has not begun, in id order.
    fn live() -> Result<Vec<Self>> {
        Ok(Self::all()?.into_iter().filter(|r| !r.deleting()).collect())
    }

    /// Marks the record with this id as being deleted, durably, before any
    /// of its storage is removed (none there is success).
    fn begin_delete(id: &str) -> Result<()> {
        match Self::load(id)? {
            Some(mut r) if !r.deleting() => {
                r.mark_deleting();
                r.save()
            }
            _ => Ok(()),
        }
    }
}

/// A snapshot record as every driver keeps one: id, the CSI name it was
/// made for, its source volume, size and creation time, plus whatever the
/// driver adds (`extra`, flattened into the same record; `NoExtra` for none).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SnapshotRecord<X = NoExtra> {
    /// The snapshot id (the record key).
    pub id: String,
    /// The CSI name it was created for (a repeat create finds it).
    pub name: String,
    /// The source volume's id.
    pub source: String,
    /// Size in bytes.
    pub size: u64,
    /// Creation time: seconds and nanoseconds since the epoch.
    pub created: (i64, u32),
    /// The group snapshot it was taken in (empty: none); see [`crate::groups`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The driver's own fields.
    #[serde(flatten)]
    pub extra: X,
}

/// No fields beyond the common ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NoExtra {}

impl<X: Serialize + DeserializeOwned> Record for SnapshotRecord<X> {
    const PREFIX: &'static str = "snap/";

    fn id(&self) -> &str {
        &self.id
    }
}

impl<X> SnapshotRecord<X> {
    /// A new record for `name`, created now.
    pub fn new(id: String, name: String, source: String, size: u64, extra: X) -> Self {
        let t = crate::capacity::now();
        Self {
            id,
            name,
            source,
            size,
            created: (t.seconds, t.nanos),
            group: String::new(),
            extra,
        }
    }

    /// Refuses to delete a member of a group snapshot on its own (CSI:
    /// INVALID_ARGUMENT; its group is deleted as a whole).
    pub fn check_deletable_alone(&self) -> Result<()> {
        if self.group.is_empty() {
            Ok(())
        } else {
            Err(DriverError::InvalidArgument(format!(
                "snapshot {} is part of group snapshot {}: delete the group",
                self.id, self.group
            )))
        }
    }

    /// The snapshot as the WIT world answers it (always ready: snapshots are copies).
    pub fn to_snapshot(&self) -> crate::Snapshot {
        crate::Snapshot {
            snapshot_id: self.id.clone(),
            source_volume_id: self.source.clone(),
            size_bytes: self.size,
            creation_time: crate::Timestamp {
                seconds: self.created.0,
                nanos: self.created.1,
            },
            ready_to_use: true,
            group_snapshot_id: self.group.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_records_keep_the_driver_s_fields_beside_the_common_ones() {
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Fs {
            fs: String,
        }
        let r = SnapshotRecord::new(
            "s1".into(),
            "n".into(),
            "v1".into(),
            7,
            Fs { fs: "xfs".into() },
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["fs"], "xfs", "{json}");
        assert_eq!(json["source"], "v1");
        let back: SnapshotRecord<Fs> = serde_json::from_value(json).unwrap();
        assert_eq!(back.extra, Fs { fs: "xfs".into() });
        assert_eq!(back.to_snapshot().snapshot_id, "s1");
        let plain = serde_json::to_value(SnapshotRecord::new(
            "s2".into(),
            "n".into(),
            "v".into(),
            1,
            NoExtra {},
        ))
        .unwrap();
        assert_eq!(plain.as_object().unwrap().len(), 5, "{plain}");
    }
}
