//! The front ends' own records (what is published, staged or attached
//! where), kept in the host's store under a namespace no driver can name,
//! so repeated calls get the same answer and conflicting ones are refused,
//! whatever the driver does.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::store::state::Persist;
use crate::store::state::{StateError, StateStore};

/// Bytes one front end's records for one driver may hold.
const RECORD_QUOTA: u64 = 256 << 20;

/// Records of one front end for one driver.
#[derive(Clone)]
pub struct HostRecords {
    store: Arc<StateStore>,
    namespace: String,
}

/// A record store failure (the store itself, or a record that does not parse).
#[derive(Debug, thiserror::Error)]
#[error("host record store: {0}")]
pub struct RecordError(String);

impl From<StateError> for RecordError {
    fn from(e: StateError) -> Self {
        RecordError(e.to_string())
    }
}

/// The bytes of a long key kept as they are; the rest is replaced by a digest.
const KEPT_PREFIX: usize = 768;

/// The key a record is stored under: `key` itself when the store takes it
/// (every key of earlier versions, so their records are found), else its
/// first 768 bytes (listing by a shorter prefix still finds it)
/// and the sha256 of the whole: a target path may be as long as the kernel
/// allows (4 KiB), and its record must work as any other.
pub fn stored_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= crate::store::state::MAX_KEY_BYTES {
        return key.into();
    }
    let mut cut = KEPT_PREFIX;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = crate::digest::Sha256Digest::of(key.as_bytes());
    format!("{}#sha256:{digest}", &key[..cut]).into()
}

impl HostRecords {
    /// Records of `front_end` (e.g. "csi") for `driver`. The namespace starts
    /// with '@', which no driver name can, so it never meets a driver's keys.
    pub fn new(store: Arc<StateStore>, front_end: &str, driver: &str) -> Self {
        Self {
            store,
            namespace: format!("@{front_end}/{driver}"),
        }
    }

    /// A record, if present.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, RecordError> {
        self.store
            .get(&self.namespace, &stored_key(key))?
            .map(|b| serde_json::from_slice(&b).map_err(|e| RecordError(format!("{key}: {e}"))))
            .transpose()
    }

    /// Every record whose key starts with `prefix`, in key order, by the
    /// key stored ([`stored_key`]: a long key comes back shortened).
    pub fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>, RecordError> {
        self.store
            .list(&self.namespace, prefix)?
            .into_iter()
            .map(|(k, v)| {
                let value =
                    serde_json::from_slice(&v).map_err(|e| RecordError(format!("{k}: {e}")))?;
                Ok((k, value))
            })
            .collect()
    }

    /// Sets (or with `None` removes) a record. `Persist::Relaxed` suits
    /// records kubelet's retries rebuild (a lost one costs a repeated call);
    /// records a restart must find (staging, device ownership) are durable.
    pub fn put<T: Serialize>(
        &self,
        key: &str,
        value: Option<&T>,
        persist: Persist,
    ) -> Result<(), RecordError> {
        let bytes = value.map(|v| serde_json::to_vec(v).expect("records serialize"));
        self.store.write(
            &self.namespace,
            &stored_key(key),
            None,
            bytes.as_deref(),
            RECORD_QUOTA,
            persist,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn long_keys_are_shortened_the_same_way_every_time_and_short_ones_not_at_all() {
        let short = format!("mount/{}", "a".repeat(900));
        assert_eq!(
            stored_key(&short),
            short.as_str(),
            "the keys of earlier versions"
        );
        let long = format!("mount/{}", "é".repeat(1500));
        let stored = stored_key(&long);
        assert!(
            stored.len() <= crate::store::state::MAX_KEY_BYTES,
            "{}",
            stored.len()
        );
        assert!(
            stored.starts_with("mount/é"),
            "prefix listing still finds it"
        );
        assert_eq!(stored, stored_key(&long));
        let other = format!("{long}x");
        assert_ne!(stored_key(&other), stored);
    }
}
