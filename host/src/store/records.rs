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
            .get(&self.namespace, key)?
            .map(|b| serde_json::from_slice(&b).map_err(|e| RecordError(format!("{key}: {e}"))))
            .transpose()
    }

    /// Every record whose key starts with `prefix`, in key order.
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
            key,
            None,
            bytes.as_deref(),
            RECORD_QUOTA,
            persist,
        )?;
        Ok(())
    }
}
