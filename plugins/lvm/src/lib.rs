//! lvm: block volumes as logical volumes in a volume group (the FlexVolume
//! `kubernetes.io/lvm` example; TopoLVM's and lvm-localpv's job), through
//! the host's `lvm` capability: the host runs the LVM tools, tags each
//! volume as this driver's and bounds what it may allocate; the driver
//! keeps no state, since its volume ids name group and volume.
//!
//! StorageClass parameters: `volumegroup` (required) and `thinpool` (thin
//! volumes in that pool). Stage makes a filesystem only on a blank volume
//! (never reformats) and mounts it; publish binds the staging mount, or the
//! device node for raw block. Expansion grows the volume, then the
//! filesystem online. Snapshots are LVM snapshots: thin of thin volumes,
//! copy-on-write of thick ones; restore and clone are thin snapshots of a
//! thin snapshot or volume, and of a thick one a thick copy the host makes. A Flex pod volume (`options: {volumeID, size,
//! volumegroup}`) is made on its first mount, since Flex has no provisioning.

use wasmvol_driver_sdk::capacity;
use wasmvol_driver_sdk::ids::not_found;
use wasmvol_driver_sdk::records::id_for;
use wasmvol_driver_sdk::*;

/// Size of a volume created without one.
const DEFAULT_CAPACITY: u64 = 1 << 30;

struct Lvm;

fn invalid(m: String) -> DriverError {
    DriverError::InvalidArgument(m)
}

fn get<'a>(kv: &'a KeyValues, key: &str) -> &'a str {
    kv.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map_or("", |(_, v)| v.as_str())
}

/// Where a volume is: its group and its name there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    vg: String,
    lv: String,
}

impl Place {
    /// The volume id, `group#name`.
    fn id(&self) -> String {
        format!("{}#{}", self.vg, self.lv)
    }

    /// A volume id read back (`None`: not one of ours).
    fn parse(id: &str) -> Option<Self> {
        let (vg, lv) = id.split_once('#')?;
        (!vg.is_empty() && !lv.is_empty() && !lv.contains('#')).then(|| Self {
            vg: vg.into(),
            lv: lv.into(),
        })
    }

    /// A node call's volume: its id, or (Flex) the `volumeID` in the
    /// group that the options name.
    fn of_request(id: &str, context: &KeyValues) -> Result<Self> {
        if let Some(p) = Self::parse(id) {
            return Ok(p);
        }
        let vg = get(context, "volumegroup");
        if vg.is_empty() {
            return Err(not_found("volume", id));
        }
        Ok(Self {
            vg: vg.into(),
            lv: lv_name("", id),
        })
    }
}

/// An LVM name for a CSI name: the name itself when LVM takes it (CSI's
/// `pvc-<uuid>` does), otherwise one derived from it.
fn lv_name(prefix: &str, name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with("snapshot");
    if plain && prefix.is_empty() {
        name.to_owned()
    } else if plain {
        format!("{prefix}-{name}")
    } else {
        id_for(if prefix.is_empty() { "lv" } else { prefix }, name)
    }
}

/// The size to make: CSI's capacity range; without one (Flex, which has
/// no provisioning step and passes its options as parameters) the `size`
/// option, else [`DEFAULT_CAPACITY`].
fn size_to_make(r: &CreateVolumeRequest) -> Result<u64> {
    match get(&r.parameters, "size") {
        size if r.capacity_range.is_none() && !size.is_empty() => parse_size(size),
        _ => capacity::resolve(&r.capacity_range, DEFAULT_CAPACITY),
    }
}

/// Parses a Flex `size` option: bytes, or with LVM's binary units (`1000m`, `1g`, `512Mi`).
fn parse_size(s: &str) -> Result<u64> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "ki" => 10,
        "m" | "mi" => 20,
        "g" | "gi" => 30,
        "t" | "ti" => 40,
        _ => return Err(invalid(format!("size `{s}`"))),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(format!("size `{s}`")))
}

fn fs_of(cap: &VolumeCapability) -> Result<Option<FsType>> {
    match &cap.access_type {
        AccessType::Block => Ok(None),
        AccessType::Mount(m) => match m.fs_type.as_str() {
            "" | "ext4" => Ok(Some(FsType::Ext4)),
            "xfs" => Ok(Some(FsType::Xfs)),
            other => Err(invalid(format!("fs type `{other}` (ext4, xfs)"))),
        },
    }
}

/// The driver's volume `place`, if it exists.
fn find(place: &Place) -> Result<Option<LogicalVolume>> {
    Ok(lvm::list_volumes(&place.vg)?
        .into_iter()
        .find(|v| v.name == place.lv))
}

fn volume_of(place: &Place, size: u64, source: Option<ContentSource>) -> Volume {
    Volume {
        volume_id: place.id(),
        capacity_bytes: size,
        volume_context: vec![("volumegroup".into(), place.vg.clone())],
        content_source: source,
        accessible_topology: Vec::new(),
    }
}

impl Driver for Lvm {
    fn info() -> DriverInfo {
        DriverInfo::named(
            "lvm.wasmvol.io",
            env!("CARGO_PKG_VERSION"),
            &[
                Feature::CreateDeleteVolume,
                Feature::StageUnstageVolume,
                Feature::ExpandVolume,
                Feature::OnlineExpansion,
                Feature::Snapshots,
                Feature::CloneVolume,
                Feature::RawBlock,
                Feature::GetCapacity,
                Feature::VolumeStats,
                Feature::NodeLocal,
                Feature::GetVolume,
            ],
        )
    }

    fn create_volume(r: CreateVolumeRequest) -> Result<Volume> {
        if r.name.is_empty() {
            return Err(invalid("volume name is required".into()));
        }
        for c in &r.volume_capabilities {
            fs_of(c)?;
        }
        let vg = get(&r.parameters, "volumegroup");
        if vg.is_empty() {
            return Err(invalid("parameter `volumegroup` is required".into()));
        }
        let pool = Some(get(&r.parameters, "thinpool")).filter(|p| !p.is_empty());
        let place = Place {
            vg: vg.into(),
            lv: lv_name("", &r.name),
        };
        let size = size_to_make(&r)?;
        if let Some(v) = find(&place)? {
            if !capacity::fits(&r.capacity_range, v.size_bytes) {
                return Err(DriverError::AlreadyExists(format!(
                    "volume `{}` exists with another size",
                    r.name
                )));
            }
            return Ok(volume_of(&place, v.size_bytes, r.content_source));
        }
        match &r.content_source {
            None => lvm::create(vg, &place.lv, size, pool)?,
            Some(ContentSource::Snapshot(id)) | Some(ContentSource::Volume(id)) => {
                let src = Place::parse(id)
                    .filter(|s| s.vg == place.vg)
                    .ok_or_else(|| not_found("source in this volume group", id))?;
                let from = find(&src)?.ok_or_else(|| not_found("source", id))?;
                if from.thin_pool.is_none() {
                    // Thick: a thick volume holding a copy of every byte
                    // (the host's, appearing only once whole).
                    if pool.is_some() {
                        return Err(invalid(format!(
                            "`{id}` is thick: its restore or clone is thick too (no `thinpool`)"
                        )));
                    }
                    lvm::copy(vg, &src.lv, &place.lv, size)?;
                } else {
                    lvm::snapshot(vg, &src.lv, &place.lv, None)?;
                    if size > from.size_bytes {
                        lvm::extend(vg, &place.lv, size)?;
                    }
                }
            }
        }
        let made = find(&place)?.map_or(size, |v| v.size_bytes);
        Ok(volume_of(&place, made, r.content_source))
    }

    fn delete_volume(r: DeleteVolumeRequest) -> Result<()> {
        match Place::parse(&r.volume_id) {
            Some(p) => lvm::remove(&p.vg, &p.lv),
            None => Ok(()),
        }
    }

    fn validate_volume_capabilities(r: ValidateRequest) -> Result<ValidateResponse> {
        let p = Place::parse(&r.volume_id).ok_or_else(|| not_found("volume", &r.volume_id))?;
        find(&p)?.ok_or_else(|| not_found("volume", &r.volume_id))?;
        // Capabilities the driver cannot give are "not confirmed", not an error.
        let check = r
            .volume_capabilities
            .iter()
            .try_for_each(|c| fs_of(c).map(drop));
        Ok(ValidateResponse::checked(r.volume_capabilities, check))
    }

    fn get_volume(r: GetVolumeRequest) -> Result<ListedVolume> {
        let p = Place::parse(&r.volume_id).ok_or_else(|| not_found("volume", &r.volume_id))?;
        let lv = find(&p)?.ok_or_else(|| not_found("volume", &r.volume_id))?;
        Ok(ListedVolume {
            volume: volume_of(&p, lv.size_bytes, None),
            abnormal_message: None,
            published_node_ids: Vec::new(),
        })
    }

    fn get_capacity(r: GetCapacityRequest) -> Result<GetCapacityResponse> {
        let vg = get(&r.parameters, "volumegroup");
        if vg.is_empty() {
            return Err(invalid("parameter `volumegroup` is required".into()));
        }
        let free = lvm::free_bytes(vg)?;
        Ok(GetCapacityResponse {
            available_capacity: free,
            maximum_volume_size: Some(free),
            minimum_volume_size: None,
        })
    }

    fn create_snapshot(r: CreateSnapshotRequest) -> Result<Snapshot> {
        let src = Place::parse(&r.source_volume_id)
            .ok_or_else(|| not_found("volume", &r.source_volume_id))?;
        let origin = find(&src)?.ok_or_else(|| not_found("volume", &r.source_volume_id))?;
        let snap = Place {
            vg: src.vg.clone(),
            lv: lv_name("snap", &r.name),
        };
        // A thick origin's copy-on-write room: the whole volume, so it never fills up.
        lvm::snapshot(&src.vg, &src.lv, &snap.lv, Some(origin.size_bytes))?;
        Ok(Snapshot {
            snapshot_id: snap.id(),
            source_volume_id: r.source_volume_id,
            size_bytes: origin.size_bytes,
            creation_time: capacity::now(),
            ready_to_use: true,
            group_snapshot_id: String::new(),
        })
    }

    fn delete_snapshot(r: DeleteSnapshotRequest) -> Result<()> {
        match Place::parse(&r.snapshot_id) {
            Some(p) => lvm::remove(&p.vg, &p.lv),
            None => Ok(()),
        }
    }

    fn controller_expand(r: ControllerExpandRequest) -> Result<ControllerExpandResponse> {
        let p = Place::parse(&r.volume_id).ok_or_else(|| not_found("volume", &r.volume_id))?;
        let size = capacity::resolve(&r.capacity_range, DEFAULT_CAPACITY)?;
        let now = lvm::extend(&p.vg, &p.lv, size)?;
        Ok(ControllerExpandResponse {
            capacity_bytes: now,
            node_expansion_required: true,
        })
    }

    fn stage(staging: Target, r: StageRequest) -> Result<()> {
        let fs = fs_of(&r.volume_capability)?;
        let place = Place::of_request(&r.volume_id, &r.volume_context)?;
        if find(&place)?.is_none() {
            // Flex has no provisioning: its options name the size to make.
            let size = get(&r.volume_context, "size");
            if size.is_empty() {
                return Err(not_found("volume", &r.volume_id));
            }
            lvm::create(&place.vg, &place.lv, parse_size(size)?, None)?;
        }
        let d = lvm::open(&place.vg, &place.lv)?;
        let Some(fs) = fs else {
            // Raw block: nothing to stage; publish binds the node.
            return Ok(());
        };
        if staging.is_mounted()? {
            return Ok(());
        }
        if d.probe_filesystem()?.is_none() {
            d.make_filesystem(fs, &MkfsOptions { label: None })?;
        }
        let flags = match &r.volume_capability.access_type {
            AccessType::Mount(m) => m.mount_flags.clone(),
            AccessType::Block => Vec::new(),
        };
        d.mount_onto(&staging, fs, &flags, false)
    }

    fn unstage(staging: Target, _r: UnstageRequest) -> Result<()> {
        staging.unmount()
    }

    fn publish(target: Target, staging: Option<Target>, r: PublishRequest) -> Result<()> {
        if target.is_mounted()? {
            return Ok(());
        }
        let place = Place::of_request(&r.volume_id, &r.volume_context)?;
        match fs_of(&r.volume_capability)? {
            None => lvm::open(&place.vg, &place.lv)?.bind_node_onto(&target),
            Some(_) => {
                let staging = staging.ok_or_else(|| {
                    DriverError::FailedPrecondition("lvm publishes from the staging mount".into())
                })?;
                if !staging.is_mounted()? {
                    return Err(DriverError::FailedPrecondition(format!(
                        "volume `{}` is not staged",
                        r.volume_id
                    )));
                }
                target.bind_from_target(&staging, r.readonly)
            }
        }
    }

    fn unpublish(target: Target, _r: UnpublishRequest) -> Result<()> {
        target.unmount()
    }

    fn volume_stats(volume_at: Target, _r: VolumeStatsRequest) -> Result<VolumeStats> {
        Ok(VolumeStats::of_filesystem(&volume_at.statvfs()?))
    }

    fn node_expand(volume_at: Target, r: NodeExpandRequest) -> Result<u64> {
        let p = Place::parse(&r.volume_id).ok_or_else(|| not_found("volume", &r.volume_id))?;
        let d = lvm::open(&p.vg, &p.lv)?;
        let size = d.size()?;
        // A raw block volume has nothing to grow at the node.
        let block = matches!(
            r.volume_capability.as_ref().map(|c| &c.access_type),
            Some(AccessType::Block)
        );
        if !block {
            d.grow_filesystem(Some(&volume_at))?;
        }
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

export_driver!(Lvm);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_read_back_and_sizes_take_lvm_units() {
        let p = Place {
            vg: "kube_vg".into(),
            lv: lv_name("", "pvc-1"),
        };
        assert_eq!(p.id(), "kube_vg#pvc-1");
        assert_eq!(Place::parse(&p.id()), Some(p));
        assert_eq!(Place::parse("lo-123"), None);
        assert_eq!(lv_name("snap", "s1"), "snap-s1");
        assert!(lv_name("", "--help").starts_with("lv-"));
        assert!(lv_name("", "a b").starts_with("lv-"));
        assert_eq!(parse_size("1000m").unwrap(), 1000 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert!(parse_size("10x").is_err());
        let flex =
            Place::of_request("vol1", &vec![("volumegroup".into(), "kube_vg".into())]).unwrap();
        assert_eq!(flex.id(), "kube_vg#vol1");
    }

    use wasmvol_driver_sdk::fake_host::requests::{self, block, filesystem};
    use wasmvol_driver_sdk::fake_host::{FakeHost, MountSource};

    const GIB: u64 = 1 << 30;

    fn host_with_group() -> FakeHost {
        let host = FakeHost::new();
        host.add_volume_group("kube_vg", 4 * GIB);
        host
    }

    #[test]
    fn a_thick_volume_is_made_once_staged_with_a_filesystem_published_and_removed() {
        let host = host_with_group();
        let create = || {
            requests::create(
                "pvc-1",
                Some(GIB),
                filesystem(""),
                &[("volumegroup", "kube_vg")],
            )
        };
        let v = Lvm::create_volume(create()).unwrap();
        assert_eq!(Lvm::create_volume(create()).unwrap(), v);
        let [lv] = host.logical_volumes("kube_vg").try_into().unwrap();
        assert_eq!((lv.size_bytes, lv.thin_pool), (GIB, None));

        let staging = || host.target("staging", TargetRole::Staging, TargetShape::Directory);
        let pod = || host.target("pod", TargetRole::Publish, TargetShape::Directory);
        Lvm::stage(staging(), requests::stage(&v, filesystem(""))).unwrap();
        Lvm::stage(staging(), requests::stage(&v, filesystem(""))).unwrap();
        assert_eq!(
            host.mounts("staging")[0].source,
            MountSource::Filesystem {
                device: format!("/dev/kube_vg/{}", lv.name),
                fs: FsType::Ext4,
                options: Vec::new()
            }
        );
        Lvm::publish(
            pod(),
            Some(staging()),
            requests::publish(&v, filesystem(""), false),
        )
        .unwrap();
        assert_eq!(host.mounts("pod").len(), 1);
        Lvm::unpublish(pod(), requests::unpublish(&v.volume_id)).unwrap();
        Lvm::unstage(staging(), requests::unstage(&v.volume_id)).unwrap();
        assert!(host.mounted().is_empty());

        Lvm::delete_volume(requests::delete(&v.volume_id)).unwrap();
        Lvm::delete_volume(requests::delete(&v.volume_id)).unwrap();
        assert!(host.logical_volumes("kube_vg").is_empty());
    }

    #[test]
    fn a_create_past_the_free_space_is_exhausted_and_makes_nothing() {
        let host = host_with_group();
        let e = Lvm::create_volume(requests::create(
            "pvc-big",
            Some(8 * GIB),
            filesystem(""),
            &[("volumegroup", "kube_vg")],
        ))
        .unwrap_err();
        assert!(matches!(e, DriverError::ResourceExhausted(_)), "{e:?}");
        assert!(host.logical_volumes("kube_vg").is_empty());
        let e =
            Lvm::create_volume(requests::create("pvc-x", None, filesystem(""), &[])).unwrap_err();
        assert!(matches!(e, DriverError::InvalidArgument(_)), "{e:?}");
    }

    #[test]
    fn a_thick_restore_is_a_copy_holding_the_sources_filesystem() {
        let host = host_with_group();
        let params = [("volumegroup", "kube_vg")];
        let v = Lvm::create_volume(requests::create(
            "pvc-src",
            Some(GIB),
            filesystem(""),
            &params,
        ))
        .unwrap();
        let staging = || host.target("staging", TargetRole::Staging, TargetShape::Directory);
        Lvm::stage(staging(), requests::stage(&v, filesystem(""))).unwrap();
        Lvm::unstage(staging(), requests::unstage(&v.volume_id)).unwrap();
        let mut clone = requests::create("pvc-clone", Some(2 * GIB), filesystem(""), &params);
        clone.content_source = Some(ContentSource::Volume(v.volume_id.clone()));
        let c = Lvm::create_volume(clone).unwrap();
        let copy = host
            .logical_volumes("kube_vg")
            .into_iter()
            .find(|lv| c.volume_id.ends_with(&lv.name))
            .unwrap();
        assert_eq!((copy.size_bytes, copy.origin), (2 * GIB, None));
        let p = Place::parse(&c.volume_id).unwrap();
        assert_eq!(
            lvm::open(&p.vg, &p.lv).unwrap().probe_filesystem().unwrap(),
            Some(FsType::Ext4)
        );
    }

    #[test]
    fn a_flex_pod_volume_is_made_on_its_first_stage_and_a_raw_one_binds_its_node() {
        let host = host_with_group();
        let ctx = vec![
            ("volumegroup".to_owned(), "kube_vg".to_owned()),
            ("size".to_owned(), "64m".to_owned()),
        ];
        let flex = Volume {
            volume_id: "vol1".into(),
            capacity_bytes: 0,
            volume_context: ctx,
            content_source: None,
            accessible_topology: Vec::new(),
        };
        Lvm::stage(
            host.target("devmount", TargetRole::Staging, TargetShape::Directory),
            requests::stage(&flex, filesystem("")),
        )
        .unwrap();
        let [lv] = host.logical_volumes("kube_vg").try_into().unwrap();
        assert_eq!((lv.name.as_str(), lv.size_bytes), ("vol1", 64 << 20));
        // The host's Flex mount provisions first, with the options as
        // parameters and no capacity range: `size` is the size to make.
        let params = [("volumegroup", "kube_vg"), ("size", "32m")];
        Lvm::create_volume(requests::create("vol2", None, filesystem(""), &params)).unwrap();
        let made = host.logical_volumes("kube_vg");
        assert_eq!(
            made.iter().find(|v| v.name == "vol2").unwrap().size_bytes,
            32 << 20
        );

        let v = Lvm::create_volume(requests::create(
            "pvc-raw",
            Some(GIB),
            block(),
            &[("volumegroup", "kube_vg")],
        ))
        .unwrap();
        let dev = || host.target("dev", TargetRole::Publish, TargetShape::File);
        Lvm::publish(dev(), None, requests::publish(&v, block(), false)).unwrap();
        assert!(
            matches!(&host.mounts("dev")[0].source, MountSource::DeviceNode(n) if n.starts_with("/dev/kube_vg/"))
        );
    }
}
