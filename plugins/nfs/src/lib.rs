//! nfs: volumes as directories on NFS shares (the FlexVolume `k8s/nfs`
//! example and csi-driver-nfs's model), through the host's `netfs`
//! capability: the host resolves, checks and mounts; the driver never runs
//! `mount`, never needs nfs-common and never sees a host path.
//!
//! A StorageClass (or Flex options) names `server` and `share`, optionally
//! `subDir`, `onDelete` (delete, retain, archive) and `nfsvers` (default
//! 4.2); mount options come from the StorageClass's `mountOptions`.
//! CreateVolume makes a directory per volume on the share (opened as a
//! detached root for the call); the volume id carries the share, so the
//! driver keeps no state. Snapshots and clones are directory copies on the
//! same share (`.snapshots/<name>` beside the volumes).

mod location;

use location::{get, Location, OnDelete};
use wasmvol_driver_sdk::capacity;
use wasmvol_driver_sdk::ids::{self, not_found};
use wasmvol_driver_sdk::records::id_for;
use wasmvol_driver_sdk::*;

struct Nfs;

/// Mount options a request names: the volume capability's mount flags and
/// a context's comma-separated `mountOptions`. The host checks each one.
fn mount_options(flags: &[String], context: &KeyValues) -> Vec<String> {
    flags
        .iter()
        .cloned()
        .chain(
            get(context, "mountOptions")
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_owned),
        )
        .collect()
}

fn check_mount_access(caps: &[VolumeCapability]) -> Result<()> {
    for c in caps {
        match &c.access_type {
            AccessType::Block => {
                return Err(DriverError::InvalidArgument(
                    "NFS volumes are directories: block access is not supported".into(),
                ))
            }
            AccessType::Mount(m) if !matches!(m.fs_type.as_str(), "" | "nfs" | "nfs4") => {
                return Err(DriverError::InvalidArgument(format!(
                    "fs type `{}`: NFS volumes are nfs",
                    m.fs_type
                )))
            }
            AccessType::Mount(_) => {}
        }
    }
    Ok(())
}

fn flags_of(cap: &VolumeCapability) -> &[String] {
    match &cap.access_type {
        AccessType::Mount(m) => &m.mount_flags,
        AccessType::Block => &[],
    }
}

/// The share of `loc`, opened as a root for controller work.
fn open(loc: &Location, params: &KeyValues) -> Result<Root> {
    netfs::open_share(&loc.share(mount_options(&[], params)))
}

/// The directory a volume (or snapshot) named `name` gets: the name itself
/// when it is a plain path name (CSI names such as `pvc-<uuid>` are),
/// otherwise one derived from it.
fn dir_name(prefix: &str, name: &str) -> String {
    match ids::path_name(name) {
        Ok(n) if !n.starts_with('.') && !n.starts_with("archived-") => n.to_owned(),
        _ => id_for(prefix, name),
    }
}

/// The share and directory of a volume id this driver made, or NOT_FOUND.
fn volume_of(id: &str) -> Result<Location> {
    Location::parse(id)
        .filter(|l| !l.path.is_empty() && !l.path.contains(".snapshots/"))
        .ok_or_else(|| not_found("volume", id))
}

/// Why the volume at `loc` is abnormal (its directory went missing from
/// the share), or `None` when it is healthy.
fn condition(root: &Root, loc: &Location) -> Result<Option<String>> {
    Ok((!root.exists(&loc.path)?).then(|| {
        format!(
            "directory `{}` is missing from share {}:{}",
            loc.path, loc.server, loc.share
        )
    }))
}

/// Where the source of the snapshot at `snap_path` is recorded: a dot-file
/// beside it (no snapshot directory starts with a dot), so that the name
/// asked again for another volume is told apart from a repeat.
fn source_marker(snap_path: &str) -> String {
    match snap_path.rsplit_once('/') {
        Some((parent, name)) => format!("{parent}/.{name}.source"),
        None => format!(".{snap_path}.source"),
    }
}

/// `parent/.snapshots` of a volume path.
fn snapshots_of(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((parent, _)) => format!("{parent}/.snapshots"),
        None => ".snapshots".into(),
    }
}

impl Driver for Nfs {
    fn info() -> DriverInfo {
        DriverInfo::named(
            "nfs.wasmvol.io",
            env!("CARGO_PKG_VERSION"),
            &[
                Feature::CreateDeleteVolume,
                Feature::Snapshots,
                Feature::CloneVolume,
                Feature::VolumeStats,
                Feature::GetVolume,
                Feature::VolumeCondition,
                Feature::SingleNodeMultiWriter,
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
        let loc = Location::from_parameters(&r.parameters)?.child(&dir_name("pvc", &r.name));
        let capacity = capacity::resolve(&r.capacity_range, 0)?;
        let root = open(&loc, &r.parameters)?;
        if !root.exists(&loc.path)? {
            let source = match &r.content_source {
                None => None,
                Some(ContentSource::Volume(id)) | Some(ContentSource::Snapshot(id)) => {
                    let src = Location::parse(id)
                        .filter(|s| s.server == loc.server && s.share == loc.share)
                        .ok_or_else(|| not_found("source on this share", id))?;
                    if !root.exists(&src.path)? {
                        return Err(not_found("source", id));
                    }
                    Some(src)
                }
            };
            // Made under a temporary name, then renamed: a crash never leaves
            // a half-copied volume under its real name.
            let tmp = format!("{}.partial", loc.path);
            root.remove_tree(&tmp)?;
            match &source {
                None => root.create_dir(&tmp)?,
                Some(src) => root.copy(&src.path, &tmp)?,
            }
            root.rename(&tmp, &loc.path)?;
        }
        Ok(Volume {
            volume_id: loc.id(),
            capacity_bytes: capacity,
            volume_context: loc.context(),
            content_source: r.content_source,
            accessible_topology: Vec::new(),
        })
    }

    fn validate_volume_capabilities(r: ValidateRequest) -> Result<ValidateResponse> {
        let loc = volume_of(&r.volume_id)?;
        if !open(&loc, &Vec::new())?.exists(&loc.path)? {
            return Err(not_found("volume", &r.volume_id));
        }
        let check = check_mount_access(&r.volume_capabilities);
        Ok(ValidateResponse::checked(r.volume_capabilities, check))
    }

    fn get_volume(r: GetVolumeRequest) -> Result<ListedVolume> {
        let loc = volume_of(&r.volume_id)?;
        let root = open(&loc, &Vec::new())?;
        // A volume whose directory went missing is still this driver's
        // volume (its id says so): reported abnormal, not NOT_FOUND, so an
        // operator sees why its pods fail.
        Ok(ListedVolume {
            abnormal_message: condition(&root, &loc)?,
            volume: Volume {
                volume_id: r.volume_id,
                capacity_bytes: 0,
                volume_context: loc.context(),
                content_source: None,
                accessible_topology: Vec::new(),
            },
            published_node_ids: Vec::new(),
        })
    }

    fn delete_volume(r: DeleteVolumeRequest) -> Result<()> {
        if r.volume_id.is_empty() {
            return Err(DriverError::InvalidArgument("volume id is required".into()));
        }
        // An id that is not ours names nothing we made: nothing to delete.
        let Some(loc) = Location::parse(&r.volume_id).filter(|l| !l.path.is_empty()) else {
            return Ok(());
        };
        let root = open(&loc, &Vec::new())?;
        match loc.on_delete {
            OnDelete::Retain => Ok(()),
            OnDelete::Delete => root.remove_tree(&loc.path),
            OnDelete::Archive => {
                if !root.exists(&loc.path)? {
                    return Ok(());
                }
                let archived = match loc.path.rsplit_once('/') {
                    Some((parent, name)) => format!("{parent}/archived-{name}"),
                    None => format!("archived-{}", loc.path),
                };
                root.remove_tree(&archived)?;
                root.rename(&loc.path, &archived)
            }
        }
    }

    fn create_snapshot(r: CreateSnapshotRequest) -> Result<Snapshot> {
        if r.name.is_empty() || r.source_volume_id.is_empty() {
            return Err(DriverError::InvalidArgument(
                "snapshot name and source volume id are required".into(),
            ));
        }
        let src = Location::parse(&r.source_volume_id)
            .ok_or_else(|| not_found("volume", &r.source_volume_id))?;
        let snap = Location {
            path: format!("{}/{}", snapshots_of(&src.path), dir_name("snap", &r.name)),
            on_delete: OnDelete::Delete,
            ..src.clone()
        };
        let root = open(&src, &Vec::new())?;
        if !root.exists(&src.path)? {
            return Err(not_found("volume", &r.source_volume_id));
        }
        let marker = source_marker(&snap.path);
        if root.exists(&snap.path)? {
            // A snapshot made before markers were kept has none: taken as a repeat.
            if root.exists(&marker)? && root.read_file(&marker)? != src.path.as_bytes() {
                return Err(DriverError::AlreadyExists(format!(
                    "snapshot `{}` exists of another volume",
                    r.name
                )));
            }
        } else {
            root.create_dir(&snapshots_of(&src.path))?;
            root.write_file(&marker, src.path.as_bytes())?;
            let tmp = format!("{}.partial", snap.path);
            root.remove_tree(&tmp)?;
            root.copy(&src.path, &tmp)?;
            root.rename(&tmp, &snap.path)?;
        }
        Ok(Snapshot {
            snapshot_id: snap.id(),
            source_volume_id: r.source_volume_id,
            size_bytes: root.usage(&snap.path)?.bytes,
            creation_time: capacity::now(),
            ready_to_use: true,
            group_snapshot_id: String::new(),
        })
    }

    fn delete_snapshot(r: DeleteSnapshotRequest) -> Result<()> {
        let Some(snap) = Location::parse(&r.snapshot_id).filter(|l| l.path.contains(".snapshots/"))
        else {
            return Ok(());
        };
        let root = open(&snap, &Vec::new())?;
        root.remove_tree(&snap.path)?;
        let marker = source_marker(&snap.path);
        if root.exists(&marker)? {
            root.remove_file(&marker)?;
        }
        Ok(())
    }

    fn publish(target: Target, _staging: Option<Target>, r: PublishRequest) -> Result<()> {
        check_mount_access(core::slice::from_ref(&r.volume_capability))?;
        // The share comes from the volume context (CSI, Flex options), else from the id.
        let loc = if get(&r.volume_context, "server").is_empty() {
            Location::parse(&r.volume_id).ok_or_else(|| not_found("volume", &r.volume_id))?
        } else {
            Location::from_parameters(&r.volume_context)?
        };
        if target.is_mounted()? {
            return Ok(());
        }
        let read_only = r.readonly
            || matches!(
                r.volume_capability.access_mode,
                AccessMode::SingleNodeReaderOnly | AccessMode::MultiNodeReaderOnly
            );
        let options = mount_options(flags_of(&r.volume_capability), &r.volume_context);
        netfs::mount_onto(&target, &loc.share(options), &loc.path, read_only)
    }

    fn unpublish(target: Target, _r: UnpublishRequest) -> Result<()> {
        target.unmount()
    }

    fn volume_stats(volume: Target, r: VolumeStatsRequest) -> Result<VolumeStats> {
        let mut stats = VolumeStats::of_filesystem(&volume.statvfs()?);
        if let Some(loc) = Location::parse(&r.volume_id) {
            stats.abnormal_message = condition(&open(&loc, &Vec::new())?, &loc)?;
        }
        Ok(stats)
    }

    fn node_info() -> Result<NodeInfo> {
        Ok(NodeInfo {
            node_id: String::new(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        })
    }
}

export_driver!(Nfs);

/// The driver's own logic, natively against the SDK's fake host.
#[cfg(test)]
mod tests {
    use super::*;
    use wasmvol_driver_sdk::fake_host::requests::{self, filesystem};
    use wasmvol_driver_sdk::fake_host::{FakeHost, MountSource};

    const SHARE: [(&str, &str); 4] = [
        ("server", "nfs.test"),
        ("share", "/srv/nfs"),
        ("subDir", "k8s"),
        ("onDelete", "archive"),
    ];

    /// The directories on the share beneath `k8s`.
    fn dirs(host: &FakeHost) -> Vec<String> {
        let mut out: Vec<String> =
            std::fs::read_dir(host.share_dir("nfs.test", "/srv/nfs").join("k8s"))
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
        out.sort();
        out
    }

    #[test]
    fn a_volume_is_a_directory_on_the_share_mounted_by_the_host_and_archived_on_delete() {
        let host = FakeHost::new();
        let create = || requests::create("pvc-1", None, filesystem(""), &SHARE);
        let v = Nfs::create_volume(create()).unwrap();
        assert_eq!(Nfs::create_volume(create()).unwrap(), v);
        let [dir] = dirs(&host).try_into().unwrap();

        let pod = || host.target("pod", TargetRole::Publish, TargetShape::Directory);
        let mut publish = requests::publish(&v, filesystem(""), true);
        publish
            .volume_context
            .push(("mountOptions".into(), "noatime, hard".into()));
        Nfs::publish(pod(), None, publish.clone()).unwrap();
        Nfs::publish(pod(), None, publish).unwrap();
        let [mounted] = host.mounts("pod").try_into().unwrap();
        assert!(mounted.read_only);
        let MountSource::Nfs { share, subdir } = mounted.source else {
            panic!("{mounted:?}");
        };
        assert_eq!(
            (share.server.as_str(), share.export_path.as_str()),
            ("nfs.test", "/srv/nfs")
        );
        assert_eq!(share.options, ["noatime", "hard"]);
        assert_eq!(subdir, format!("k8s/{dir}"));
        Nfs::unpublish(pod(), requests::unpublish(&v.volume_id)).unwrap();
        assert!(host.mounted().is_empty());

        Nfs::delete_volume(requests::delete(&v.volume_id)).unwrap();
        Nfs::delete_volume(requests::delete(&v.volume_id)).unwrap();
        assert_eq!(dirs(&host), [format!("archived-{dir}")]);
    }

    #[test]
    fn a_share_is_required_and_a_clone_copies_the_source_directory() {
        let host = FakeHost::new();
        let e =
            Nfs::create_volume(requests::create("pvc-x", None, filesystem(""), &[])).unwrap_err();
        assert!(matches!(e, DriverError::InvalidArgument(_)), "{e:?}");
        assert!(dirs(&host).is_empty());

        let v =
            Nfs::create_volume(requests::create("pvc-src", None, filesystem(""), &SHARE)).unwrap();
        let [src] = dirs(&host).try_into().unwrap();
        let k8s = host.share_dir("nfs.test", "/srv/nfs").join("k8s");
        std::fs::write(k8s.join(&src).join("data"), b"on the share").unwrap();
        let mut clone = requests::create("pvc-clone", None, filesystem(""), &SHARE);
        clone.content_source = Some(ContentSource::Volume(v.volume_id.clone()));
        Nfs::create_volume(clone).unwrap();
        let copied: Vec<_> = dirs(&host).into_iter().filter(|d| *d != src).collect();
        let [copy] = copied.try_into().unwrap();
        assert_eq!(
            std::fs::read(k8s.join(copy).join("data")).unwrap(),
            b"on the share"
        );
    }
}
