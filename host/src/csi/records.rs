//! The CSI front end's records: what is published and staged where.

use tonic::Status;

use crate::placement::Placement;
use crate::store::records::{HostRecords, Persist, RecordError};

/// Publish and stage records of one CSI driver.
#[derive(Clone)]
pub struct Records(pub HostRecords);

fn unavailable(e: RecordError) -> Status {
    Status::unavailable(e.to_string())
}

/// The by-volume index key of a publish: the id hex-encoded, since an id
/// may hold `/` and a prefix of one id must not match another's.
fn by_volume(volume_id: &str, target: &str) -> String {
    format!("pubvol/{}/{target}", hex::encode(volume_id))
}

/// The target path a record key names after `prefix`, unless the key was
/// shortened to a digest and names none.
fn target_in<'k>(key: &'k str, prefix: &str) -> Option<&'k std::path::Path> {
    key.strip_prefix(prefix)
        .filter(|t| !t.contains("#sha256:"))
        .map(std::path::Path::new)
}

impl Records {
    /// The publish at a target path, if any.
    pub fn published(&self, target: &str) -> Result<Option<Placement>, Status> {
        self.0.get(&format!("pub/{target}")).map_err(unavailable)
    }

    /// Records (or with `None` forgets) the publish at a target path, and
    /// indexes it by volume ([`Self::published_elsewhere`]).
    pub fn set_published(&self, target: &str, p: Option<&Placement>) -> Result<(), Status> {
        let volume = match p {
            Some(p) => Some(p.volume_id.clone()),
            None => self.published(target)?.map(|was| was.volume_id),
        };
        if let Some(volume) = volume {
            self.0
                .put(
                    &by_volume(&volume, target),
                    p.map(|_| &true),
                    Persist::Relaxed,
                )
                .map_err(unavailable)?;
        }
        self.0
            .put(&format!("pub/{target}"), p, Persist::Relaxed)
            .map_err(unavailable)
    }

    /// A target other than `target` the volume is published at, if any.
    pub fn published_elsewhere(
        &self,
        volume_id: &str,
        target: &str,
    ) -> Result<Option<String>, Status> {
        let prefix = by_volume(volume_id, "");
        let own = by_volume(volume_id, target);
        let own = crate::store::records::stored_key(&own);
        Ok(self
            .0
            .list::<bool>(&prefix)
            .map_err(unavailable)?
            .into_iter()
            .filter(|(k, _)| *k != own)
            .find_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_owned)))
    }

    /// At start, before any call: forgets the publish records of targets
    /// with nothing mounted on them (`mounted`: every mount point), and the
    /// made-target records of targets that no longer exist. Publish records
    /// are relaxed, so a crash can lose the removal of one whose put had
    /// reached the disk; left, it would refuse the next single-writer
    /// publish of its volume. A target is named by the key itself; a key
    /// shortened to a digest ([`crate::store::records::stored_key`]) names
    /// no path and is kept. Returns how many were forgotten.
    pub fn forget_unmounted(
        &self,
        mounted: &std::collections::HashSet<std::path::PathBuf>,
    ) -> Result<usize, RecordError> {
        let mut stale: Vec<String> = Vec::new();
        for (key, _) in self.0.list::<Placement>("pub/")? {
            if target_in(&key, "pub/").is_some_and(|t| !mounted.contains(t)) {
                stale.push(key);
            }
        }
        for (key, _) in self.0.list::<bool>("pubvol/")? {
            // `pubvol/<hex id>/<target>`: the id's hex holds no '/'.
            let target = key.splitn(3, '/').nth(2).unwrap_or_default();
            if target_in(target, "").is_some_and(|t| !mounted.contains(t)) {
                stale.push(key);
            }
        }
        for (key, _) in self.0.list::<bool>("made/")? {
            if target_in(&key, "made/").is_some_and(|t| t.symlink_metadata().is_err()) {
                stale.push(key);
            }
        }
        for key in &stale {
            self.0.put::<bool>(key, None, Persist::Relaxed)?;
        }
        Ok(stale.len())
    }

    /// Whether the host made the target path at `target` (and so may remove it).
    pub fn target_made(&self, target: &str) -> Result<bool, Status> {
        Ok(self
            .0
            .get::<bool>(&format!("made/{target}"))
            .map_err(unavailable)?
            .unwrap_or(false))
    }

    /// Records that the host made (`true`) or no longer owns (`false`) the target path.
    pub fn set_target_made(&self, target: &str, made: bool) -> Result<(), Status> {
        self.0
            .put(
                &format!("made/{target}"),
                made.then_some(&true),
                Persist::Relaxed,
            )
            .map_err(unavailable)
    }

    /// How a volume is published to a node (ControllerPublish), if it is.
    pub fn attached(&self, volume_id: &str, node_id: &str) -> Result<Option<Placement>, Status> {
        self.0
            .get(&format!("attach/{volume_id}/{node_id}"))
            .map_err(unavailable)
    }

    /// Records (or with `None` forgets) a volume published to a node.
    pub fn set_attached(
        &self,
        volume_id: &str,
        node_id: &str,
        p: Option<&Placement>,
    ) -> Result<(), Status> {
        self.0
            .put(
                &format!("attach/{volume_id}/{node_id}"),
                p,
                Persist::Durable,
            )
            .map_err(unavailable)
    }

    /// Where a volume is staged, if anywhere.
    pub fn staged(&self, volume_id: &str) -> Result<Option<(String, Placement)>, Status> {
        self.0
            .get(&format!("stage/{volume_id}"))
            .map_err(unavailable)
    }

    /// Records (or with `None` forgets) where a volume is staged.
    pub fn set_staged(
        &self,
        volume_id: &str,
        at: Option<(&str, &Placement)>,
    ) -> Result<(), Status> {
        // Durable: a host restarted between stage and publish must still know.
        self.0
            .put(&format!("stage/{volume_id}"), at.as_ref(), Persist::Durable)
            .map_err(unavailable)
    }
}
