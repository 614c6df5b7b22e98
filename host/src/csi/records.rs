//! The host's own CSI records: what is published where and staged where,
//! kept durably so repeated calls get the same answer and conflicting ones
//! get ALREADY_EXISTS, whatever the driver does.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::state_store::{Persist, StateStore};

/// Bytes the host's records for one driver may hold.
const RECORD_QUOTA: u64 = 256 << 20;

/// What a publish or stage was asked for; a repeat must ask for the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub volume_id: String,
    /// The request's capability and flags, as canonical JSON.
    pub fingerprint: String,
}

/// Records of one CSI driver, in a namespace drivers cannot name.
#[derive(Clone)]
pub struct Records {
    store: Arc<StateStore>,
    namespace: String,
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("host record store: {e}"))
}

impl Records {
    pub fn new(store: Arc<StateStore>, driver: &str) -> Self {
        // '@' cannot start a driver name, so this never meets a driver's own keys.
        Self {
            store,
            namespace: format!("@csi/{driver}"),
        }
    }

    fn get(&self, key: &str) -> Result<Option<Placement>, Status> {
        let bytes = self.store.get(&self.namespace, key).map_err(unavailable)?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(unavailable))
            .transpose()
    }

    /// Records are written relaxed: after a crash kubelet re-issues every
    /// publish and stage, and the driver answers those from the live mounts.
    fn put(&self, key: &str, bytes: Option<Vec<u8>>) -> Result<(), Status> {
        self.store
            .write(
                &self.namespace,
                key,
                None,
                bytes.as_deref(),
                RECORD_QUOTA,
                Persist::Relaxed,
            )
            .map(|_| ())
            .map_err(unavailable)
    }

    /// The publish at a target path, if any.
    pub fn published(&self, target: &str) -> Result<Option<Placement>, Status> {
        self.get(&format!("pub/{target}"))
    }

    pub fn set_published(&self, target: &str, p: Option<&Placement>) -> Result<(), Status> {
        let bytes = p.map(|p| serde_json::to_vec(p).expect("records serialize"));
        self.put(&format!("pub/{target}"), bytes)
    }

    /// Where a volume is staged, if anywhere (keyed by volume id).
    pub fn staged(&self, volume_id: &str) -> Result<Option<(String, Placement)>, Status> {
        let key = format!("stage/{volume_id}");
        let bytes = self.store.get(&self.namespace, &key).map_err(unavailable)?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(unavailable))
            .transpose()
    }

    pub fn set_staged(
        &self,
        volume_id: &str,
        at: Option<(&str, &Placement)>,
    ) -> Result<(), Status> {
        let bytes = at.map(|a| serde_json::to_vec(&a).expect("records serialize"));
        self.put(&format!("stage/{volume_id}"), bytes)
    }
}
