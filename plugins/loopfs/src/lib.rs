//! loopfs: block volumes on loop devices over sparse backing files in the
//! driver's storage root, with no tool and no root access of its own.
//!
//! Controller publish (FlexVolume attach) attaches the loop device; stage
//! attaches too when the CO has not (CSI with no attach step), makes a
//! filesystem only on a blank device (never reformats) and mounts it at the
//! staging handle; publish binds the staging mount (mount access) or the
//! device node (raw block) onto the target. Expansion grows the backing
//! file, refreshes the loop capacity and grows the filesystem, online when
//! staged. Snapshots are copies of the backing file; a group snapshot
//! copies each member's in one call (see the SDK's `groups`), which is as
//! consistent as the filesystems on them were written back at that moment.
//! Mutable parameter `readOnly` (see the SDK's `mutable`) makes every later
//! publish read-only.

mod records;

use records::{snapshot_file, volume_file, SnapshotRecord, VolumeRecord};
use wasmvol_driver_sdk::capacity;
use wasmvol_driver_sdk::groups;
use wasmvol_driver_sdk::ids::not_found;
use wasmvol_driver_sdk::mutable;
use wasmvol_driver_sdk::records::{id_for, Deletable, Record};
use wasmvol_driver_sdk::*;

/// Size of a volume created without one.
const DEFAULT_CAPACITY: u64 = 1 << 30;

struct LoopFs;

fn root() -> Result<Root> {
    volumes::open_root()
}

fn volume(id: &str) -> Result<VolumeRecord> {
    VolumeRecord::find(id)?.ok_or_else(|| not_found("volume", id))
}

/// Copies the image `from` to `to` under a temporary name, then renames
/// it into place: a host killed mid-copy never leaves a partial image
/// under the real name, which a retry (it copies only when the name is
/// missing) would take for a whole one.
fn copy_whole(root: &Root, from: &str, to: &str) -> Result<()> {
    let tmp = format!("{to}.partial");
    root.remove_tree(&tmp)?;
    root.copy(from, &tmp)?;
    root.rename(&tmp, to)
}

/// Deletes a volume: marked first, then its loop device and backing file,
/// then its record, so a delete cut off anywhere is finished by the next.
fn remove_volume(id: &str) -> Result<()> {
    // An id that is not a plain name was never one of ours: nothing to delete.
    let Ok(file) = volume_file(id) else {
        return Ok(());
    };
    VolumeRecord::begin_delete(id)?;
    let root = root()?;
    if let Some(d) = device::find_attached(&root, &file)? {
        d.detach()?;
    }
    root.remove_file(&file)?;
    VolumeRecord::delete(id)
}

fn fs_name(cap: &VolumeCapability) -> Result<String> {
    match &cap.access_type {
        AccessType::Block => Ok(String::new()),
        AccessType::Mount(m) => match m.fs_type.as_str() {
            "" | "ext4" => Ok("ext4".into()),
            "xfs" => Ok("xfs".into()),
            other => Err(DriverError::InvalidArgument(format!(
                "fs type `{other}` is not supported (ext4, xfs)"
            ))),
        },
    }
}

/// Makes (and records, in `group` when it is not empty) or finds again
/// snapshot `name` of volume `source`.
fn snapshot_named(source: &str, name: &str, group: &str) -> Result<SnapshotRecord> {
    let id = id_for("losnap", name);
    if let Some(s) = SnapshotRecord::load(&id)? {
        if s.source != source {
            return Err(DriverError::AlreadyExists(format!(
                "snapshot `{name}` exists for another volume"
            )));
        }
        return Ok(s);
    }
    let v = volume(source)?;
    let root = root()?;
    root.create_dir("snapshots")?;
    let file = snapshot_file(&id)?;
    if !root.exists(&file)? {
        copy_whole(&root, &v.file()?, &file)?;
    }
    let mut record = SnapshotRecord::new(
        id,
        name.to_owned(),
        v.id.clone(),
        v.capacity,
        records::SnapshotFs { fs: v.fs.clone() },
    );
    record.group = group.to_owned();
    record.save()?;
    Ok(record)
}

/// Removes a snapshot's copy (its record is the caller's to remove).
fn remove_snapshot(s: &SnapshotRecord) -> Result<()> {
    root()?.remove_file(&snapshot_file(&s.id)?)
}

/// What is wrong with a volume, if anything: its backing file went missing.
fn condition(root: &Root, id: &str) -> Result<Option<String>> {
    Ok((!root.exists(&volume_file(id)?)?)
        .then(|| format!("backing file of {id} is missing from the storage root")))
}

fn fs_type(name: &str) -> FsType {
    if name == "xfs" {
        FsType::Xfs
    } else {
        FsType::Ext4
    }
}

/// The volume's device: the one the host already attached, or a new attach.
fn attached(root: &Root, v: &VolumeRecord) -> Result<BlockDevice> {
    match device::find_attached(root, &v.file()?)? {
        Some(d) => Ok(d),
        None => device::attach(root, &v.file()?),
    }
}

impl Driver for LoopFs {
    fn info() -> DriverInfo {
        DriverInfo::named(
            "loopfs.wasmvol.io",
            env!("CARGO_PKG_VERSION"),
            &[
                Feature::CreateDeleteVolume,
                Feature::PublishUnpublishVolume,
                Feature::StageUnstageVolume,
                Feature::ExpandVolume,
                Feature::OnlineExpansion,
                Feature::Snapshots,
                Feature::RawBlock,
                Feature::ListVolumes,
                Feature::GetCapacity,
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
        let fs = match r.volume_capabilities.first() {
            Some(c) => fs_name(c)?,
            None => "ext4".into(),
        };
        let fs = if fs.is_empty() { "ext4".to_owned() } else { fs };
        let id = id_for("lo", &r.name);
        let capacity = capacity::resolve(&r.capacity_range, DEFAULT_CAPACITY)?;
        let read_only = mutable::read_only(false, &r.mutable_parameters)?;
        // A delete of this name cut off halfway: finish it, then make anew.
        let found = VolumeRecord::load(&id)?;
        if found.as_ref().is_some_and(|v| v.deleting) {
            remove_volume(&id)?;
        }
        if let Some(v) = found.filter(|v| !v.deleting) {
            if !capacity::fits(&r.capacity_range, v.capacity) || v.read_only != read_only {
                return Err(DriverError::AlreadyExists(format!(
                    "volume `{}` exists with another size",
                    r.name
                )));
            }
            return Ok(v.to_volume());
        }
        let root = root()?;
        root.create_dir("volumes")?;
        let file = volume_file(&id)?;
        let (source, capacity) = match &r.content_source {
            None => {
                if !root.exists(&file)? {
                    device::create_backing_file(&root, &file, capacity)?;
                }
                (None, capacity)
            }
            Some(ContentSource::Snapshot(sid)) => {
                let s = SnapshotRecord::load(sid)?.ok_or_else(|| not_found("snapshot", sid))?;
                if !root.exists(&file)? {
                    copy_whole(&root, &snapshot_file(sid)?, &file)?;
                }
                device::grow_backing_file(&root, &file, capacity.max(s.size))?;
                (Some(format!("snapshot:{sid}")), capacity.max(s.size))
            }
            Some(ContentSource::Volume(src)) => {
                let s = volume(src)?;
                if !root.exists(&file)? {
                    copy_whole(&root, &s.file()?, &file)?;
                }
                device::grow_backing_file(&root, &file, capacity.max(s.capacity))?;
                (Some(format!("volume:{src}")), capacity.max(s.capacity))
            }
        };
        let v = VolumeRecord {
            id,
            name: r.name,
            capacity,
            fs,
            source,
            read_only,
            deleting: false,
        };
        v.save()?;
        let mut out = v.to_volume();
        out.content_source = r.content_source;
        Ok(out)
    }

    fn delete_volume(r: DeleteVolumeRequest) -> Result<()> {
        remove_volume(&r.volume_id)
    }

    fn controller_publish(r: ControllerPublishRequest) -> Result<KeyValues> {
        let v = volume(&r.volume_id)?;
        let d = attached(&root()?, &v)?;
        Ok(vec![(DEVICE_PATH_KEY.to_owned(), d.node())])
    }

    fn controller_unpublish(r: ControllerUnpublishRequest) -> Result<()> {
        let root = root()?;
        if let Some(d) = device::find_attached(&root, &volume_file(&r.volume_id)?)? {
            d.detach()?;
        }
        Ok(())
    }

    fn validate_volume_capabilities(r: ValidateRequest) -> Result<ValidateResponse> {
        volume(&r.volume_id)?;
        // Capabilities the driver cannot give are "not confirmed", not an error.
        let check = r
            .volume_capabilities
            .iter()
            .try_for_each(|c| fs_name(c).map(drop));
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
        let s = root()?.statvfs("")?;
        Ok(GetCapacityResponse {
            available_capacity: s.available_bytes,
            maximum_volume_size: None,
            minimum_volume_size: Some(16 << 20),
        })
    }

    fn create_snapshot(r: CreateSnapshotRequest) -> Result<Snapshot> {
        Ok(snapshot_named(&r.source_volume_id, &r.name, "")?.to_snapshot())
    }

    fn delete_snapshot(r: DeleteSnapshotRequest) -> Result<()> {
        let Ok(file) = snapshot_file(&r.snapshot_id) else {
            return Ok(());
        };
        if let Some(s) = SnapshotRecord::load(&r.snapshot_id)? {
            s.check_deletable_alone()?;
        }
        root()?.remove_file(&file)?;
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
        groups::get::<records::SnapshotFs>(&r)
    }

    fn get_volume(r: GetVolumeRequest) -> Result<ListedVolume> {
        let v = volume(&r.volume_id)?;
        Ok(ListedVolume {
            abnormal_message: condition(&root()?, &v.id)?,
            volume: v.to_volume(),
            published_node_ids: Vec::new(),
        })
    }

    fn modify_volume(r: ModifyVolumeRequest) -> Result<()> {
        let mut v = volume(&r.volume_id)?;
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
        let mut v = volume(&r.volume_id)?;
        let size = capacity::resolve(&r.capacity_range, DEFAULT_CAPACITY)?;
        if size > v.capacity {
            let root = root()?;
            device::grow_backing_file(&root, &v.file()?, size)?;
            if let Some(d) = device::find_attached(&root, &v.file()?)? {
                d.refresh_size()?;
            }
            v.capacity = size;
            v.save()?;
        }
        Ok(ControllerExpandResponse {
            capacity_bytes: v.capacity,
            node_expansion_required: true,
        })
    }

    fn stage(staging: Target, r: StageRequest) -> Result<()> {
        let v = volume(&r.volume_id)?;
        let d = attached(&root()?, &v)?;
        let AccessType::Mount(m) = &r.volume_capability.access_type else {
            // Raw block: attached is staged; publish binds the node.
            return Ok(());
        };
        if staging.is_mounted()? {
            return Ok(());
        }
        let fs = fs_type(&v.fs);
        if d.probe_filesystem()?.is_none() {
            d.make_filesystem(fs, &MkfsOptions { label: None })?;
        }
        d.mount_onto(&staging, fs, &m.mount_flags, false)
    }

    fn unstage(staging: Target, r: UnstageRequest) -> Result<()> {
        staging.unmount()?;
        if let Some(d) = device::find_attached(&root()?, &volume_file(&r.volume_id)?)? {
            d.detach()?;
        }
        Ok(())
    }

    fn publish(target: Target, staging: Option<Target>, r: PublishRequest) -> Result<()> {
        if target.is_mounted()? {
            return Ok(());
        }
        let v = volume(&r.volume_id)?;
        match &r.volume_capability.access_type {
            AccessType::Block if v.read_only => Err(DriverError::FailedPrecondition(format!(
                "volume `{}` is read-only (mutable parameter readOnly), which a raw block publish cannot honour",
                v.id
            ))),
            AccessType::Block => {
                let d = device::find_attached(&root()?, &v.file()?)?.ok_or_else(|| {
                    DriverError::FailedPrecondition(format!("volume `{}` is not attached", v.id))
                })?;
                d.bind_node_onto(&target)
            }
            AccessType::Mount(_) => {
                let staging = staging.ok_or_else(|| {
                    DriverError::FailedPrecondition(
                        "loopfs publishes from the staging mount".into(),
                    )
                })?;
                if !staging.is_mounted()? {
                    return Err(DriverError::FailedPrecondition(format!(
                        "volume `{}` is not staged",
                        v.id
                    )));
                }
                target.bind_from_target(&staging, r.readonly || v.read_only)
            }
        }
    }

    fn unpublish(target: Target, _r: UnpublishRequest) -> Result<()> {
        target.unmount()
    }

    fn volume_stats(volume_at: Target, r: VolumeStatsRequest) -> Result<VolumeStats> {
        let v = volume(&r.volume_id)?;
        let s = volume_at.statvfs()?;
        Ok(VolumeStats {
            usage: vec![
                UsageEntry {
                    unit: UsageUnit::Bytes,
                    total: s.total_bytes,
                    used: s.total_bytes - s.free_bytes,
                    available: s.available_bytes,
                },
                UsageEntry {
                    unit: UsageUnit::Inodes,
                    total: s.total_inodes,
                    used: s.total_inodes - s.free_inodes,
                    available: s.free_inodes,
                },
            ],
            abnormal_message: match condition(&root()?, &v.id)? {
                Some(missing) => Some(missing),
                None => (s.total_bytes == 0).then(|| format!("volume `{}` reports no space", v.id)),
            },
        })
    }

    fn node_expand(volume_at: Target, r: NodeExpandRequest) -> Result<u64> {
        let v = volume(&r.volume_id)?;
        let d = device::find_attached(&root()?, &v.file()?)?.ok_or_else(|| {
            DriverError::FailedPrecondition(format!("volume `{}` is not attached", v.id))
        })?;
        let size = d.refresh_size()?;
        if let AccessType::Block = r
            .volume_capability
            .as_ref()
            .map(|c| c.access_type.clone())
            .unwrap_or(AccessType::Mount(MountAccess {
                fs_type: String::new(),
                mount_flags: Vec::new(),
                volume_mount_group: String::new(),
            }))
        {
            return Ok(size);
        }
        d.grow_filesystem(Some(&volume_at))?;
        Ok(size)
    }

    fn node_info() -> Result<NodeInfo> {
        Ok(NodeInfo {
            node_id: String::new(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        })
    }
}

export_driver!(LoopFs);

/// The driver's own logic, natively against the SDK's fake host.
#[cfg(test)]
mod tests {
    use super::*;
    use wasmvol_driver_sdk::fake_host::requests::{self, block, filesystem};
    use wasmvol_driver_sdk::fake_host::{FakeHost, Mount, MountSource};

    const MIB: u64 = 1 << 20;

    #[test]
    fn stage_makes_a_filesystem_once_and_publish_binds_the_staging_mount() {
        let host = FakeHost::new();
        let v = LoopFs::create_volume(requests::create(
            "pv-1",
            Some(16 * MIB),
            filesystem("xfs"),
            &[],
        ))
        .unwrap();
        let file = host.root().join(volume_file(&v.volume_id).unwrap());
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 16 * MIB);

        let staging = || host.target("staging", TargetRole::Staging, TargetShape::Directory);
        let pod = || host.target("pod", TargetRole::Publish, TargetShape::Directory);
        for _ in 0..2 {
            LoopFs::stage(staging(), requests::stage(&v, filesystem("xfs"))).unwrap();
        }
        let [loop_dev] = host.attached_devices().try_into().unwrap();
        assert_eq!(
            host.mounts("staging"),
            [Mount {
                source: MountSource::Filesystem {
                    device: loop_dev.clone(),
                    fs: FsType::Xfs,
                    options: Vec::new()
                },
                read_only: false
            }]
        );
        LoopFs::publish(
            pod(),
            Some(staging()),
            requests::publish(&v, filesystem("xfs"), true),
        )
        .unwrap();
        let [bound] = host.mounts("pod").try_into().unwrap();
        assert!(bound.read_only);
        assert!(matches!(
            bound.source,
            MountSource::Target { ref place, showing: Some(ref s) }
                if place == "staging" && matches!(**s, MountSource::Filesystem { .. })
        ));

        LoopFs::unpublish(pod(), requests::unpublish(&v.volume_id)).unwrap();
        LoopFs::unstage(staging(), requests::unstage(&v.volume_id)).unwrap();
        assert!(host.mounted().is_empty());
        assert!(host.attached_devices().is_empty());
        // Staged again: the filesystem made the first time is found, not remade.
        LoopFs::stage(staging(), requests::stage(&v, filesystem("xfs"))).unwrap();
        LoopFs::unstage(staging(), requests::unstage(&v.volume_id)).unwrap();

        LoopFs::delete_volume(requests::delete(&v.volume_id)).unwrap();
        assert!(!file.exists());
        assert!(host.state().is_empty(), "records left: {:?}", host.state());
    }

    #[test]
    fn a_raw_block_volume_binds_its_device_node_and_a_read_only_one_is_refused() {
        let host = FakeHost::new();
        let v = LoopFs::create_volume(requests::create("pv-b", Some(MIB), block(), &[])).unwrap();
        let dev = || host.target("dev", TargetRole::Publish, TargetShape::File);
        LoopFs::stage(
            host.target("staging", TargetRole::Staging, TargetShape::Directory),
            requests::stage(&v, block()),
        )
        .unwrap();
        LoopFs::publish(dev(), None, requests::publish(&v, block(), false)).unwrap();
        let [node] = host.attached_devices().try_into().unwrap();
        assert_eq!(host.mounts("dev")[0].source, MountSource::DeviceNode(node));
        LoopFs::unpublish(dev(), requests::unpublish(&v.volume_id)).unwrap();

        let mut ro = requests::create("pv-b-ro", Some(MIB), block(), &[]);
        ro.mutable_parameters = vec![("readOnly".into(), "true".into())];
        let ro = LoopFs::create_volume(ro).unwrap();
        let e = LoopFs::publish(
            host.target("dev-ro", TargetRole::Publish, TargetShape::File),
            None,
            requests::publish(&ro, block(), false),
        )
        .unwrap_err();
        assert!(matches!(e, DriverError::FailedPrecondition(_)), "{e:?}");
        assert!(host.mounts("dev-ro").is_empty());
    }

    #[test]
    fn a_snapshot_copies_the_filesystem_into_the_restored_volume() {
        let host = FakeHost::new();
        let v = LoopFs::create_volume(requests::create("pv-s", Some(MIB), filesystem(""), &[]))
            .unwrap();
        let staging = || host.target("staging", TargetRole::Staging, TargetShape::Directory);
        LoopFs::stage(staging(), requests::stage(&v, filesystem(""))).unwrap();
        LoopFs::unstage(staging(), requests::unstage(&v.volume_id)).unwrap();
        let snap = LoopFs::create_snapshot(requests::snapshot(&v.volume_id, "snap-1")).unwrap();
        let mut restore = requests::create("pv-r", Some(MIB), filesystem(""), &[]);
        restore.content_source = Some(ContentSource::Snapshot(snap.snapshot_id));
        let r = LoopFs::create_volume(restore).unwrap();
        // The restored device holds the snapshot's ext4: stage mounts it, makes none.
        let d = device::attach(&root().unwrap(), &volume_file(&r.volume_id).unwrap()).unwrap();
        assert_eq!(d.probe_filesystem().unwrap(), Some(FsType::Ext4));
        d.detach().unwrap();
        for dir in ["volumes", "snapshots"] {
            for e in host.root().join(dir).read_dir().unwrap() {
                let name = e.unwrap().file_name();
                assert!(
                    !name.to_string_lossy().ends_with(".partial"),
                    "{name:?} left"
                );
            }
        }
    }
}
