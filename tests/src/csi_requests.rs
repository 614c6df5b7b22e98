//! CSI request builders the CSI tests share: the capability kubelet sends
//! for a mounted volume and the plain CreateVolume of a size.

use wasmvol::csi::proto::*;

/// A mount-access capability with `mode`.
pub fn mount_cap(mode: volume_capability::access_mode::Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume::default(),
        )),
        access_mode: Some(volume_capability::AccessMode { mode: mode as i32 }),
    }
}

/// The usual capability: mounted, single-node writer.
pub fn rw() -> VolumeCapability {
    mount_cap(volume_capability::access_mode::Mode::SingleNodeWriter)
}

/// CreateVolume of `name` with `bytes` required, mounted read-write.
pub fn create_req(name: &str, bytes: i64) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![rw()],
        ..Default::default()
    }
}
