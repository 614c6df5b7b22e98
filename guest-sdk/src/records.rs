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
