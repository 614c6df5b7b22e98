//! Requests as kubelet and the CSI sidecars send them, for driver tests:
//! a single-node-writer filesystem volume unless said otherwise.

use crate::{
    AccessMode, AccessType, CapacityRange, CreateSnapshotRequest, CreateVolumeRequest,
    DeleteVolumeRequest, MountAccess, PublishRequest, StageRequest, UnpublishRequest,
    UnstageRequest, Volume, VolumeCapability,
};

fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A filesystem volume (`fs_type` empty: the driver's default), single node writer.
pub fn filesystem(fs_type: &str) -> VolumeCapability {
    VolumeCapability {
        access_type: AccessType::Mount(MountAccess {
            fs_type: fs_type.to_owned(),
            mount_flags: Vec::new(),
            volume_mount_group: String::new(),
        }),
        access_mode: AccessMode::SingleNodeWriter,
    }
}

/// A raw block volume, single node writer.
pub fn block() -> VolumeCapability {
    VolumeCapability {
        access_type: AccessType::Block,
        access_mode: AccessMode::SingleNodeWriter,
    }
}

/// CreateVolume of `name`, `bytes` asked for (none: the driver's default),
/// with StorageClass `parameters`, as the external provisioner sends it.
pub fn create(
    name: &str,
    bytes: Option<u64>,
    capability: VolumeCapability,
    parameters: &[(&str, &str)],
) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.to_owned(),
        capacity_range: bytes.map(|b| CapacityRange {
            required_bytes: b,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![capability],
        parameters: pairs(parameters),
        secrets: Vec::new(),
        content_source: None,
        accessibility_requirements: None,
        mutable_parameters: Vec::new(),
    }
}

/// DeleteVolume of `volume_id`.
pub fn delete(volume_id: &str) -> DeleteVolumeRequest {
    DeleteVolumeRequest {
        volume_id: volume_id.to_owned(),
        secrets: Vec::new(),
    }
}

/// NodeStageVolume of `volume` (its context passed on, as kubelet does).
pub fn stage(volume: &Volume, capability: VolumeCapability) -> StageRequest {
    StageRequest {
        volume_id: volume.volume_id.clone(),
        publish_context: Vec::new(),
        volume_capability: capability,
        secrets: Vec::new(),
        volume_context: volume.volume_context.clone(),
    }
}

/// NodeUnstageVolume of `volume_id`.
pub fn unstage(volume_id: &str) -> UnstageRequest {
    UnstageRequest {
        volume_id: volume_id.to_owned(),
    }
}

/// NodePublishVolume of `volume`, read-only or not.
pub fn publish(volume: &Volume, capability: VolumeCapability, readonly: bool) -> PublishRequest {
    PublishRequest {
        volume_id: volume.volume_id.clone(),
        publish_context: Vec::new(),
        volume_capability: capability,
        readonly,
        secrets: Vec::new(),
        volume_context: volume.volume_context.clone(),
    }
}

/// NodeUnpublishVolume of `volume_id`.
pub fn unpublish(volume_id: &str) -> UnpublishRequest {
    UnpublishRequest {
        volume_id: volume_id.to_owned(),
    }
}

/// CreateSnapshot `name` of `volume_id`, as the snapshotter sends it.
pub fn snapshot(volume_id: &str, name: &str) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        source_volume_id: volume_id.to_owned(),
        name: name.to_owned(),
        secrets: Vec::new(),
        parameters: Vec::new(),
    }
}
