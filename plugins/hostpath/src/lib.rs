//! hostpath: directory volumes beneath the driver's storage root.
//!
//! Volumes live in `volumes/<id>`, snapshots in `snapshots/<id>` (full
//! copies). Records live in the host's durable state: `vol/<id>` and
//! `snap/<id>`. Ids derive from the CSI name, so a repeated create finds the
//! volume it made before. Publish bind-mounts the volume directory onto the
//! request's target handle; the driver never sees a host path.
//!
//! Mutable parameter (CreateVolume's `mutable_parameters`, ModifyVolume):
//! `readOnly` = `true` | `false`, every later publish of the volume is
//! read-only (a publish in place keeps its mode until it is published again).
//! Group snapshots copy each member in one call (see the SDK's `groups`).

mod records;

use wasmvol_driver_sdk::*;

use records::{SnapshotRecord, VolumeRecord};
use wasmvol_driver_sdk::capacity;
use wasmvol_driver_sdk::groups;
use wasmvol_driver_sdk::ids::{self, not_found};
use wasmvol_driver_sdk::mutable;
use wasmvol_driver_sdk::paging;
use wasmvol_driver_sdk::records::{id_for, Deletable, Record};

/// Capacity of a volume created without a size.
const DEFAULT_CAPACITY: u64 = 1 << 30;

struct HostPath;

fn root() -> Result<Root> {
    volumes::open_root()
}

/// A volume's directory; the id must be a plain name ([`ids::path_name`]).
fn volume_dir(id: &str) -> Result<String> {
    ids::path_under("volumes", id, "")
}

/// A snapshot's directory; the id must be a plain name ([`ids::path_name`]).
fn snapshot_dir(id: &str) -> Result<String> {
    ids::path_under("snapshots", id, "")
}

/// Builds a volume under a temporary name, then renames it into place, so a
/// crash never leaves a half-copied volume under its real name.
fn materialize(root: &Root, dir: &str, fill: impl FnOnce(&Root, &str) -> Result<()>) -> Result<()> {
    if root.exists(dir)? {
        return Ok(());
    }
    if let Some((parent, _)) = dir.rsplit_once('/') {
        root.create_dir(parent)?;
    }
    let tmp = format!("{dir}.partial");
    root.remove_tree(&tmp)?;
    fill(root, &tmp)?;
    root.rename(&tmp, dir)
}

/// Deletes a volume: marked first, then its directory, then its record,
/// so a delete cut off anywhere is finished by the next.
fn remove_volume(id: &str) -> Result<()> {
    // An id that is not a plain name was never one of ours: nothing to delete.
    let Ok(dir) = volume_dir(id) else {
        return Ok(());
    };
    VolumeRecord::begin_delete(id)?;
    root()?.remove_tree(&dir)?;
    VolumeRecord::delete(id)
}

/// What is wrong with a volume, if anything: its directory went missing.
fn condition(root: &Root, id: &str) -> Result<Option<String>> {
    Ok((!root.exists(&volume_dir(id)?)?)
        .then(|| format!("volume directory of {id} is missing from the storage root")))
}

/// Makes (and records, in `group` when it is not empty) or finds again
/// snapshot `name` of volume `source`.
fn snapshot_named(source: &str, name: &str, group: &str) -> Result<SnapshotRecord> {
    let id = id_for("snap", name);
    if let Some(existing) = SnapshotRecord::load(&id)? {
        if existing.source != source {
            return Err(DriverError::AlreadyExists(format!(
                "snapshot `{name}` exists for another volume"
            )));
        }
        return Ok(existing);
    }
    VolumeRecord::find(source)?.ok_or_else(|| not_found("volume", source))?;
    let root = root()?;
    let dir = snapshot_dir(&id)?;
    materialize(&root, &dir, |root, tmp| {
        root.copy(&volume_dir(source)?, tmp)
    })?;
    let size = root.usage(&dir)?.bytes;
    let mut record = SnapshotRecord::new(
        id,
        name.to_owned(),
        source.to_owned(),
        size,
        Default::default(),
    );
    record.group = group.to_owned();
    record.save()?;
    Ok(record)
}

/// Removes a snapshot's copy (its record is the caller's to remove).
fn remove_snapshot(s: &SnapshotRecord) -> Result<()> {
    root()?.remove_tree(&snapshot_dir(&s.id)?)
}

fn check_mount_access(caps: &[VolumeCapability]) -> Result<()> {
    for c in caps {
        if let AccessType::Block = c.access_type {
            return Err(DriverError::InvalidArgument(
                "hostpath volumes are directories: block access is not supported".into(),
            ));
        }
    }
    Ok(())
}

impl Driver for HostPath {
    fn info() -> DriverInfo {
        DriverInfo::named(
            "hostpath.wasmvol.io",
            env!("CARGO_PKG_VERSION"),
            &[
                Feature::CreateDeleteVolume,
                Feature::ListVolumes,
                Feature::GetCapacity,
                Feature::Snapshots,
                Feature::CloneVolume,
                Feature::ExpandVolume,
                Feature::OnlineExpansion,
                Feature::VolumeStats,
                Feature::NodeLocal,
                Feature::SingleNodeMultiWriter,
                Feature::ModifyVolume,
                Feature::GetVolume,
                Feature::VolumeCondition,
                Feature::GetSnapshot,
                Feature::ListSnapshots,
                Feature::GroupSnapshots,
            ],
        )
    }

    fn create_volume(r: CreateVolumeRequest) -> Result<Volume> {
        if r.name.is_empty() {
            return Err(DriverError::InvalidArgument(
                "volume name is required".into(),
            ));
        }
        check_mount_access(&r.volume_capabilities)?;
        let id = id_for("hp", &r.name);
        let read_only = mutable::read_only(false, &r.mutable_parameters)?;
        // A delete of this name cut off halfway: finish it, then make anew.
        let found = VolumeRecord::load(&id)?;
        if found.as_ref().is_some_and(|v| v.deleting) {
            remove_volume(&id)?;
        }
        if let Some(existing) = found.filter(|v| !v.deleting) {
            if !capacity::fits(&r.capacity_range, existing.capacity)
                || existing.source != r.content_source
                || existing.read_only != read_only
            {
                return Err(DriverError::AlreadyExists(format!(
                    "volume `{}` exists with another size, source or readOnly",
                    r.name
                )));
            }
            return Ok(existing.to_volume());
        }
        let capacity = capacity::resolve(&r.capacity_range, DEFAULT_CAPACITY)?;
        let root = root()?;
        let available = root.statvfs("")?.available_bytes;
        if capacity > available {
            return Err(DriverError::OutOfRange(format!(
                "{capacity} bytes requested, {available} available"
            )));
        }
        let dir = volume_dir(&id)?;
        materialize(&root, &dir, |root, tmp| match &r.content_source {
            None => root.create_dir(tmp),
            Some(ContentSource::Snapshot(sid)) => {
                SnapshotRecord::load(sid)?.ok_or_else(|| not_found("snapshot", sid))?;
                root.copy(&snapshot_dir(sid)?, tmp)
            }
            Some(ContentSource::Volume(vid)) => {
                VolumeRecord::find(vid)?.ok_or_else(|| not_found("volume", vid))?;
                root.copy(&volume_dir(vid)?, tmp)
            }
        })?;
        let record = VolumeRecord {
            id,
            name: r.name,
            capacity,
            source: r.content_source,
            read_only,
            deleting: false,
        };
        record.save()?;
        Ok(record.to_volume())
    }

    fn delete_volume(r: DeleteVolumeRequest) -> Result<()> {
        if r.volume_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume id is required".into()));
        }
        remove_volume(&r.volume_id)
    }

    fn validate_volume_capabilities(r: ValidateRequest) -> Result<ValidateResponse> {
        VolumeRecord::find(&r.volume_id)?.ok_or_else(|| not_found("volume", &r.volume_id))?;
        let check = check_mount_access(&r.volume_capabilities);
        Ok(ValidateResponse::checked(r.volume_capabilities, check))
    }

    fn list_volumes(r: ListVolumesRequest) -> Result<ListVolumesResponse> {
        let all = VolumeRecord::live()?
            .iter()
            .map(VolumeRecord::to_volume)
            .collect();
        let root = root()?;
        paging::list_volumes_with_condition(all, &r, |v| condition(&root, &v.volume_id))
    }

    fn get_capacity(_r: GetCapacityRequest) -> Result<GetCapacityResponse> {
        let stats = root()?.statvfs("")?;
        Ok(GetCapacityResponse {
            available_capacity: stats.available_bytes,
            maximum_volume_size: Some(stats.available_bytes),
            minimum_volume_size: None,
        })
    }

    fn create_snapshot(r: CreateSnapshotRequest) -> Result<Snapshot> {
        if r.name.is_empty() || r.source_volume_id.is_empty() {
            return Err(DriverError::InvalidArgument(
                "snapshot name and source volume id are required".into(),
            ));
        }
        Ok(snapshot_named(&r.source_volume_id, &r.name, "")?.to_snapshot())
    }

    fn delete_snapshot(r: DeleteSnapshotRequest) -> Result<()> {
        if r.snapshot_id.is_empty() {
            return Err(DriverError::InvalidArgument(
                "snapshot id is required".into(),
            ));
        }
        let Ok(dir) = snapshot_dir(&r.snapshot_id) else {
            return Ok(());
        };
        if let Some(s) = SnapshotRecord::load(&r.snapshot_id)? {
            s.check_deletable_alone()?;
        }
        root()?.remove_tree(&dir)?;
        SnapshotRecord::delete(&r.snapshot_id)
    }

    fn get_snapshot(r: GetSnapshotRequest) -> Result<Snapshot> {
        SnapshotRecord::load(&r.snapshot_id)?
            .map(|s| s.to_snapshot())
            .ok_or_else(|| not_found("snapshot", &r.snapshot_id))
    }

    fn create_group_snapshot(r: CreateGroupSnapshotRequest) -> Result<GroupSnapshot> {
        groups::create(&r, snapshot_named, remove_snapshot)
    }

    fn delete_group_snapshot(r: GroupSnapshotRequest) -> Result<()> {
        groups::delete(&r, remove_snapshot)
    }

    fn get_group_snapshot(r: GroupSnapshotRequest) -> Result<GroupSnapshot> {
        groups::get::<wasmvol_driver_sdk::records::NoExtra>(&r)
    }

    fn get_volume(r: GetVolumeRequest) -> Result<ListedVolume> {
        let v =
            VolumeRecord::find(&r.volume_id)?.ok_or_else(|| not_found("volume", &r.volume_id))?;
        Ok(ListedVolume {
            abnormal_message: condition(&root()?, &v.id)?,
            volume: v.to_volume(),
            published_node_ids: Vec::new(),
        })
    }

    fn modify_volume(r: ModifyVolumeRequest) -> Result<()> {
        let mut v =
            VolumeRecord::find(&r.volume_id)?.ok_or_else(|| not_found("volume", &r.volume_id))?;
        let read_only = mutable::read_only(v.read_only, &r.mutable_parameters)?;
        if read_only != v.read_only {
            v.read_only = read_only;
            v.save()?;
        }
        Ok(())
    }

    fn list_snapshots(r: ListSnapshotsRequest) -> Result<ListSnapshotsResponse> {
        let all = SnapshotRecord::all()?
            .iter()
            .map(SnapshotRecord::to_snapshot)
            .collect();
        paging::list_snapshots(all, &r)
    }

    fn controller_expand(r: ControllerExpandRequest) -> Result<ControllerExpandResponse> {
        let mut v =
            VolumeRecord::find(&r.volume_id)?.ok_or_else(|| not_found("volume", &r.volume_id))?;
        let wanted = capacity::resolve(&r.capacity_range, DEFAULT_CAPACITY)?;
        if wanted > v.capacity {
            v.capacity = wanted;
            v.save()?;
        }
        Ok(ControllerExpandResponse {
            capacity_bytes: v.capacity,
            node_expansion_required: false,
        })
    }

    fn publish(target: Target, _staging: Option<Target>, r: PublishRequest) -> Result<()> {
        check_mount_access(core::slice::from_ref(&r.volume_capability))?;
        let v =
            VolumeRecord::find(&r.volume_id)?.ok_or_else(|| not_found("volume", &r.volume_id))?;
        if target.is_mounted()? {
            return Ok(());
        }
        let read_only = r.readonly
            || v.read_only
            || matches!(
                r.volume_capability.access_mode,
                AccessMode::SingleNodeReaderOnly | AccessMode::MultiNodeReaderOnly
            );
        target.bind_from_root(&root()?, &volume_dir(&r.volume_id)?, read_only)
    }

    fn unpublish(target: Target, _r: UnpublishRequest) -> Result<()> {
        target.unmount()
    }

    fn volume_stats(_volume: Target, r: VolumeStatsRequest) -> Result<VolumeStats> {
        let v =
            VolumeRecord::find(&r.volume_id)?.ok_or_else(|| not_found("volume", &r.volume_id))?;
        let root = root()?;
        if let Some(abnormal) = condition(&root, &v.id)? {
            // Nothing to count: say what is wrong (CSI VolumeCondition).
            return Ok(VolumeStats {
                usage: Vec::new(),
                abnormal_message: Some(abnormal),
            });
        }
        let dir = volume_dir(&v.id)?;
        let used = root.usage(&dir)?;
        let fs = root.statvfs(&dir)?;
        let available = v
            .capacity
            .saturating_sub(used.bytes)
            .min(fs.available_bytes);
        Ok(VolumeStats {
            usage: vec![
                UsageEntry {
                    unit: UsageUnit::Bytes,
                    total: v.capacity,
                    used: used.bytes,
                    available,
                },
                UsageEntry {
                    unit: UsageUnit::Inodes,
                    total: fs.total_inodes,
                    used: used.inodes,
                    available: fs.free_inodes,
                },
            ],
            abnormal_message: None,
        })
    }

    fn node_expand(_volume: Target, r: NodeExpandRequest) -> Result<u64> {
        let v =
            VolumeRecord::find(&r.volume_id)?.ok_or_else(|| not_found("volume", &r.volume_id))?;
        Ok(v.capacity)
    }

    fn node_info() -> Result<NodeInfo> {
        // The front end fills in the node's name: a driver has no ambient view of the host.
        Ok(NodeInfo {
            node_id: String::new(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        })
    }
}

export_driver!(HostPath);

/// The driver's own logic, natively against the SDK's fake host.
#[cfg(test)]
mod tests {
    use super::*;
    use wasmvol_driver_sdk::fake_host::requests::{self, filesystem};
    use wasmvol_driver_sdk::fake_host::{FakeHost, Mount, MountSource};

    fn pod(host: &FakeHost) -> Target {
        host.target("pod", TargetRole::Publish, TargetShape::Directory)
    }

    #[test]
    fn a_volume_is_made_once_published_unpublished_and_deleted_without_a_trace() {
        let host = FakeHost::new();
        let create = || requests::create("pv-1", Some(1 << 20), filesystem(""), &[]);
        let v = HostPath::create_volume(create()).unwrap();
        assert_eq!(HostPath::create_volume(create()).unwrap(), v);
        let dir = host.root().join("volumes").join(&v.volume_id);
        assert!(dir.is_dir());

        let publish = || requests::publish(&v, filesystem(""), false);
        HostPath::publish(pod(&host), None, publish()).unwrap();
        // kubelet's retry finds it mounted and mounts nothing more.
        HostPath::publish(pod(&host), None, publish()).unwrap();
        assert_eq!(
            host.mounts("pod"),
            [Mount {
                source: MountSource::Root(format!("volumes/{}", v.volume_id)),
                read_only: false
            }]
        );
        HostPath::unpublish(pod(&host), requests::unpublish(&v.volume_id)).unwrap();
        HostPath::unpublish(pod(&host), requests::unpublish(&v.volume_id)).unwrap();
        assert!(host.mounted().is_empty());

        HostPath::delete_volume(requests::delete(&v.volume_id)).unwrap();
        HostPath::delete_volume(requests::delete(&v.volume_id)).unwrap();
        assert!(!dir.exists());
        assert!(host.state().is_empty(), "records left: {:?}", host.state());
    }

    #[test]
    fn a_read_only_volume_is_bound_read_only_and_an_unknown_one_is_not_found() {
        let host = FakeHost::new();
        let mut create = requests::create("pv-ro", None, filesystem(""), &[]);
        create.mutable_parameters = vec![("readOnly".into(), "true".into())];
        let v = HostPath::create_volume(create).unwrap();
        HostPath::publish(
            pod(&host),
            None,
            requests::publish(&v, filesystem(""), false),
        )
        .unwrap();
        assert!(host.mounts("pod")[0].read_only);

        let mut other = v.clone();
        other.volume_id = "no-such-volume".into();
        let e = HostPath::publish(
            host.target("pod-2", TargetRole::Publish, TargetShape::Directory),
            None,
            requests::publish(&other, filesystem(""), false),
        )
        .unwrap_err();
        assert!(matches!(e, DriverError::NotFound(_)), "{e:?}");
        assert!(host.mounts("pod-2").is_empty());
    }

    #[test]
    fn a_delete_cut_off_after_its_mark_is_finished_by_the_next_and_lists_nothing() {
        let host = FakeHost::new();
        let v =
            HostPath::create_volume(requests::create("pv-2", None, filesystem(""), &[])).unwrap();
        // The host died after the mark: the volume is gone for every caller.
        VolumeRecord::begin_delete(&v.volume_id).unwrap();
        let listed = HostPath::list_volumes(ListVolumesRequest {
            max_entries: 0,
            starting_token: String::new(),
        })
        .unwrap();
        assert!(listed.entries.is_empty(), "{:?}", listed.entries);
        HostPath::delete_volume(requests::delete(&v.volume_id)).unwrap();
        assert!(!host.root().join("volumes").join(&v.volume_id).exists());
        assert!(host.state().is_empty(), "records left: {:?}", host.state());
    }

    #[test]
    fn a_snapshot_restores_into_a_new_volume_with_the_same_files() {
        let host = FakeHost::new();
        let v =
            HostPath::create_volume(requests::create("pv-src", None, filesystem(""), &[])).unwrap();
        let dir = host.root().join("volumes").join(&v.volume_id);
        std::fs::write(dir.join("data"), b"kept").unwrap();
        let snap = HostPath::create_snapshot(requests::snapshot(&v.volume_id, "snap-1")).unwrap();
        let mut restore = requests::create("pv-restored", None, filesystem(""), &[]);
        restore.content_source = Some(ContentSource::Snapshot(snap.snapshot_id.clone()));
        let r = HostPath::create_volume(restore).unwrap();
        let restored = host.root().join("volumes").join(&r.volume_id).join("data");
        assert_eq!(std::fs::read(restored).unwrap(), b"kept");
    }
}
