//! CSI messages to and from the driver world's types.
//!
//! Requests are parsed here, at the edge: a missing or malformed field
//! becomes INVALID_ARGUMENT naming it, and everything past this point
//! carries the validated WIT types.

use std::collections::HashMap;

use tonic::Status;

use super::proto as pb;
use crate::bindings::types::{
    AccessMode, AccessType, CapacityRange, ContentSource, KeyValues, MountAccess, Snapshot,
    Topology, TopologyRequirement, Volume, VolumeCapability,
};

/// A map as sorted key-values (deterministic for records and audit).
pub fn key_values(map: HashMap<String, String>) -> KeyValues {
    let mut kv: KeyValues = map.into_iter().collect();
    kv.sort();
    kv
}

/// Key-values back to a map.
pub fn map(kv: KeyValues) -> HashMap<String, String> {
    kv.into_iter().collect()
}

/// A required string field.
pub fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    Ok(value)
}

/// A required absolute path field.
pub fn required_path(value: &str, field: &str) -> Result<std::path::PathBuf, Status> {
    let p = crate::host_path::RequestPath::parse(required(value, field)?)
        .map_err(|why| Status::invalid_argument(format!("{field} {why}")))?;
    Ok(p.as_path().to_owned())
}

/// One volume capability; both access type and a known access mode are required.
pub fn capability(cap: pb::VolumeCapability, field: &str) -> Result<VolumeCapability, Status> {
    use pb::volume_capability::access_mode::Mode;
    let access_type = match cap.access_type {
        Some(pb::volume_capability::AccessType::Block(_)) => AccessType::Block,
        Some(pb::volume_capability::AccessType::Mount(m)) => AccessType::Mount(MountAccess {
            fs_type: m.fs_type,
            mount_flags: m.mount_flags,
            volume_mount_group: m.volume_mount_group,
        }),
        None => {
            return Err(Status::invalid_argument(format!(
                "{field}.access_type (block or mount) is required"
            )))
        }
    };
    let mode = cap
        .access_mode
        .map(|m| Mode::try_from(m.mode).unwrap_or(Mode::Unknown))
        .unwrap_or(Mode::Unknown);
    let access_mode = match mode {
        Mode::SingleNodeWriter => AccessMode::SingleNodeWriter,
        Mode::SingleNodeReaderOnly => AccessMode::SingleNodeReaderOnly,
        Mode::MultiNodeReaderOnly => AccessMode::MultiNodeReaderOnly,
        Mode::MultiNodeSingleWriter => AccessMode::MultiNodeSingleWriter,
        Mode::MultiNodeMultiWriter => AccessMode::MultiNodeMultiWriter,
        Mode::SingleNodeSingleWriter => AccessMode::SingleNodeSingleWriter,
        Mode::SingleNodeMultiWriter => AccessMode::SingleNodeMultiWriter,
        Mode::Unknown => {
            return Err(Status::invalid_argument(format!(
                "{field}.access_mode is required"
            )))
        }
    };
    Ok(VolumeCapability {
        access_type,
        access_mode,
    })
}

/// A required capability field.
pub fn required_capability(
    cap: Option<pb::VolumeCapability>,
    field: &str,
) -> Result<VolumeCapability, Status> {
    capability(
        cap.ok_or_else(|| Status::invalid_argument(format!("{field} is required")))?,
        field,
    )
}

/// A non-empty list of capabilities.
pub fn capabilities(
    caps: Vec<pb::VolumeCapability>,
    field: &str,
) -> Result<Vec<VolumeCapability>, Status> {
    if caps.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    caps.into_iter()
        .enumerate()
        .map(|(i, c)| capability(c, &format!("{field}[{i}]")))
        .collect()
}

/// A capability back to its CSI form.
pub fn capability_out(cap: VolumeCapability) -> pb::VolumeCapability {
    use pb::volume_capability::access_mode::Mode;
    let access_type = match cap.access_type {
        AccessType::Block => pb::volume_capability::AccessType::Block(Default::default()),
        AccessType::Mount(m) => {
            pb::volume_capability::AccessType::Mount(pb::volume_capability::MountVolume {
                fs_type: m.fs_type,
                mount_flags: m.mount_flags,
                volume_mount_group: m.volume_mount_group,
            })
        }
    };
    let mode = match cap.access_mode {
        AccessMode::SingleNodeWriter => Mode::SingleNodeWriter,
        AccessMode::SingleNodeReaderOnly => Mode::SingleNodeReaderOnly,
        AccessMode::MultiNodeReaderOnly => Mode::MultiNodeReaderOnly,
        AccessMode::MultiNodeSingleWriter => Mode::MultiNodeSingleWriter,
        AccessMode::MultiNodeMultiWriter => Mode::MultiNodeMultiWriter,
        AccessMode::SingleNodeSingleWriter => Mode::SingleNodeSingleWriter,
        AccessMode::SingleNodeMultiWriter => Mode::SingleNodeMultiWriter,
    };
    pb::VolumeCapability {
        access_type: Some(access_type),
        access_mode: Some(pb::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

/// A capacity range; negative sizes are invalid, a limit below the requirement is out of range.
pub fn capacity_range(r: Option<pb::CapacityRange>) -> Result<Option<CapacityRange>, Status> {
    let Some(r) = r else { return Ok(None) };
    if r.required_bytes < 0 || r.limit_bytes < 0 {
        return Err(Status::invalid_argument(
            "capacity_range bytes must not be negative",
        ));
    }
    if r.limit_bytes != 0 && r.required_bytes > r.limit_bytes {
        return Err(Status::out_of_range(format!(
            "capacity_range.required_bytes {} exceeds limit_bytes {}",
            r.required_bytes, r.limit_bytes
        )));
    }
    Ok(Some(CapacityRange {
        required_bytes: r.required_bytes as u64,
        limit_bytes: r.limit_bytes as u64,
    }))
}

/// A volume content source.
pub fn content_source(s: Option<pb::VolumeContentSource>) -> Result<Option<ContentSource>, Status> {
    use pb::volume_content_source::Type;
    match s.and_then(|s| s.r#type) {
        None => Ok(None),
        Some(Type::Snapshot(s)) => Ok(Some(ContentSource::Snapshot(
            required(&s.snapshot_id, "volume_content_source.snapshot.snapshot_id")?.to_owned(),
        ))),
        Some(Type::Volume(v)) => Ok(Some(ContentSource::Volume(
            required(&v.volume_id, "volume_content_source.volume.volume_id")?.to_owned(),
        ))),
    }
}

fn content_source_out(s: Option<ContentSource>) -> Option<pb::VolumeContentSource> {
    use pb::volume_content_source::{SnapshotSource, Type, VolumeSource};
    s.map(|s| pb::VolumeContentSource {
        r#type: Some(match s {
            ContentSource::Snapshot(snapshot_id) => Type::Snapshot(SnapshotSource { snapshot_id }),
            ContentSource::Volume(volume_id) => Type::Volume(VolumeSource { volume_id }),
        }),
    })
}

/// A CSI topology.
pub fn topology(t: pb::Topology) -> Topology {
    Topology {
        segments: key_values(t.segments),
    }
}

/// A topology back to CSI.
pub fn topology_out(t: Topology) -> pb::Topology {
    pb::Topology {
        segments: map(t.segments),
    }
}

/// A CSI topology requirement.
pub fn topology_requirement(t: Option<pb::TopologyRequirement>) -> Option<TopologyRequirement> {
    t.map(|t| TopologyRequirement {
        requisite: t.requisite.into_iter().map(topology).collect(),
        preferred: t.preferred.into_iter().map(topology).collect(),
    })
}

/// Bytes from the driver as CSI's int64 (saturating).
pub fn bytes_out(b: u64) -> i64 {
    i64::try_from(b).unwrap_or(i64::MAX)
}

/// A volume back to CSI.
pub fn volume_out(v: Volume) -> pb::Volume {
    pb::Volume {
        capacity_bytes: bytes_out(v.capacity_bytes),
        volume_id: v.volume_id,
        volume_context: map(v.volume_context),
        content_source: content_source_out(v.content_source),
        accessible_topology: v
            .accessible_topology
            .into_iter()
            .map(topology_out)
            .collect(),
    }
}

/// A snapshot back to CSI.
pub fn snapshot_out(s: Snapshot) -> pb::Snapshot {
    pb::Snapshot {
        size_bytes: bytes_out(s.size_bytes),
        snapshot_id: s.snapshot_id,
        source_volume_id: s.source_volume_id,
        creation_time: Some(timestamp_out(s.creation_time)),
        ready_to_use: s.ready_to_use,
        group_snapshot_id: s.group_snapshot_id,
    }
}

/// A driver's timestamp as protobuf carries it.
fn timestamp_out(t: crate::bindings::types::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos as i32,
    }
}

/// A group snapshot back to CSI.
pub fn group_snapshot_out(g: crate::bindings::types::GroupSnapshot) -> pb::VolumeGroupSnapshot {
    pb::VolumeGroupSnapshot {
        group_snapshot_id: g.group_snapshot_id,
        snapshots: g.snapshots.into_iter().map(snapshot_out).collect(),
        creation_time: Some(timestamp_out(g.creation_time)),
        ready_to_use: g.ready_to_use,
    }
}

/// CSI list sizes: negative is invalid.
pub fn max_entries(n: i32) -> Result<u32, Status> {
    u32::try_from(n).map_err(|_| Status::invalid_argument("max_entries must not be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_need_type_and_mode() {
        assert_eq!(
            capabilities(vec![], "volume_capabilities")
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        let no_mode = pb::VolumeCapability {
            access_type: Some(pb::volume_capability::AccessType::Block(Default::default())),
            access_mode: None,
        };
        let err = capability(no_mode, "c").unwrap_err();
        assert!(err.message().contains("c.access_mode"), "{err}");
        let ok = capability_out(VolumeCapability {
            access_type: AccessType::Block,
            access_mode: AccessMode::SingleNodeMultiWriter,
        });
        assert_eq!(
            capability(ok, "c").unwrap().access_mode,
            AccessMode::SingleNodeMultiWriter
        );
    }

    #[test]
    fn capacity_ranges_are_checked() {
        let r = |required_bytes, limit_bytes| {
            capacity_range(Some(pb::CapacityRange {
                required_bytes,
                limit_bytes,
            }))
        };
        assert_eq!(r(-1, 0).unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(r(10, 5).unwrap_err().code(), tonic::Code::OutOfRange);
        assert_eq!(r(5, 0).unwrap().unwrap().required_bytes, 5);
    }
}
