//! Stage and publish idempotency, shared by the CSI and Flex front ends.
//!
//! Kubelet repeats calls. A repeated stage or publish of the same volume,
//! with the same arguments, at a path where it is mounted is already done;
//! one with other arguments (another volume, capability or read-only flag)
//! conflicts; anything else goes ahead (a first call, or a repeat whose
//! mount is gone). Each front end keeps the [`Placement`] it recorded and
//! asks [`repeat_of`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::bindings::types::VolumeCapability;
use crate::sys::mount::is_mount_point;

/// What a stage or publish was asked for; a repeat must ask for the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The volume placed.
    pub volume_id: String,
    /// The request's capability and flags, as canonical JSON.
    pub fingerprint: String,
}

impl Placement {
    /// The placement of `volume_id` with `capability`, read-only or not.
    pub fn new(volume_id: &str, capability: &VolumeCapability, read_only: bool) -> Self {
        Self {
            volume_id: volume_id.to_owned(),
            fingerprint: serde_json::json!({"capability": capability, "readonly": read_only})
                .to_string(),
        }
    }
}

impl Placement {
    /// The capability the volume was placed with (for a call that omits it,
    /// such as NodeExpandVolume, whose capability is optional).
    pub fn capability(&self) -> Option<VolumeCapability> {
        let v: serde_json::Value = serde_json::from_str(&self.fingerprint).ok()?;
        serde_json::from_value(v.get("capability")?.clone()).ok()
    }
}

/// What a stage or publish at a path should do, given what is recorded there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeat {
    /// The same placement is recorded and mounted: answer success, do nothing.
    AlreadyDone,
    /// Another placement is recorded there: refuse, with this message.
    Conflict(String),
    /// Nothing (still) in place: do the work.
    Proceed,
}

/// Decides a stage or publish of `asked` at `at`, where `recorded` was placed.
pub fn repeat_of(recorded: Option<&Placement>, asked: &Placement, at: &Path) -> Repeat {
    match recorded {
        None => Repeat::Proceed,
        Some(p) if p != asked => Repeat::Conflict(format!(
            "{} already holds volume {} with other arguments",
            at.display(),
            p.volume_id
        )),
        Some(_) if is_mount_point(at).unwrap_or(false) => Repeat::AlreadyDone,
        Some(_) => Repeat::Proceed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{AccessMode, AccessType};

    #[test]
    fn the_capability_placed_with_is_read_back() {
        let cap = VolumeCapability {
            access_type: AccessType::Block,
            access_mode: AccessMode::SingleNodeWriter,
        };
        let back = Placement::new("v1", &cap, true)
            .capability()
            .expect("read back");
        assert!(matches!(back.access_type, AccessType::Block));
        assert!(matches!(back.access_mode, AccessMode::SingleNodeWriter));
    }

    #[test]
    fn repeats_are_done_conflicting_or_redone() {
        let cap = VolumeCapability {
            access_type: AccessType::Block,
            access_mode: AccessMode::SingleNodeWriter,
        };
        let asked = Placement::new("v1", &cap, false);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(repeat_of(None, &asked, dir.path()), Repeat::Proceed);
        // Recorded, but nothing is mounted there any more: do it again.
        assert_eq!(repeat_of(Some(&asked), &asked, dir.path()), Repeat::Proceed);
        // `/proc` is a mount point: the same placement there is done.
        assert_eq!(
            repeat_of(Some(&asked), &asked, Path::new("/proc")),
            Repeat::AlreadyDone
        );
        for other in [
            Placement::new("v2", &cap, false),
            Placement::new("v1", &cap, true),
        ] {
            assert!(matches!(
                repeat_of(Some(&other), &asked, dir.path()),
                Repeat::Conflict(m) if m.contains(&other.volume_id)
            ));
        }
    }
}
