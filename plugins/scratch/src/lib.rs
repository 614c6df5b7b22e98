//! scratch: CSI ephemeral inline volumes (and any scratch volume a pod asks
//! for at publish) as size-limited tmpfs mounts, through the host's `tmpfs`
//! capability. No storage root, no state: the volume lives exactly as long
//! as its mount.
//!
//! The pod's volume attributes (CSI `volumeAttributes`) set `size` (bytes,
//! or with a `Ki`, `Mi` or `Gi` suffix; default 64Mi), `mode` (octal,
//! default 1777) and `uid`/`gid` (default 0; the volume mount group, as
//! kubelet passes fsGroup, sets the group). The host caps the size at
//! `grants.tmpfs.max_bytes`.

use wasmvol_driver_sdk::*;

struct Scratch;

/// Size of a scratch volume whose attributes name none.
const DEFAULT_SIZE: u64 = 64 << 20;

fn get<'a>(kv: &'a KeyValues, key: &str) -> Option<&'a str> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn invalid(m: String) -> DriverError {
    DriverError::InvalidArgument(m)
}

/// Parses `1048576`, `512Ki`, `64Mi`, `1Gi`.
fn parse_size(s: &str) -> Result<u64> {
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        _ => {
            return Err(invalid(format!(
                "size `{s}`: bytes, or a Ki, Mi or Gi suffix"
            )))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(format!("size `{s}` is not a positive size")))
}

fn parse_number(kv: &KeyValues, key: &str, radix: u32, default: u32) -> Result<u32> {
    match get(kv, key) {
        None | Some("") => Ok(default),
        Some(v) => u32::from_str_radix(v, radix).map_err(|_| invalid(format!("{key} `{v}`"))),
    }
}

/// The tmpfs a publish asks for.
fn options(r: &PublishRequest) -> Result<TmpfsOptions> {
    let ctx = &r.volume_context;
    let size_bytes = match get(ctx, "size") {
        None | Some("") => DEFAULT_SIZE,
        Some(s) => parse_size(s)?,
    };
    let group = match &r.volume_capability.access_type {
        AccessType::Mount(m) if !m.volume_mount_group.is_empty() => Some(
            m.volume_mount_group
                .parse::<u32>()
                .map_err(|_| invalid(format!("volume mount group `{}`", m.volume_mount_group)))?,
        ),
        _ => None,
    };
    Ok(TmpfsOptions {
        size_bytes,
        mode: parse_number(ctx, "mode", 8, 0o1777)?,
        uid: parse_number(ctx, "uid", 10, 0)?,
        gid: match group {
            Some(g) => g,
            None => parse_number(ctx, "gid", 10, 0)?,
        },
    })
}

impl Driver for Scratch {
    fn info() -> DriverInfo {
        DriverInfo::named(
            "scratch.wasmvol.io",
            env!("CARGO_PKG_VERSION"),
            &[Feature::VolumeStats],
        )
    }

    fn publish(target: Target, _staging: Option<Target>, r: PublishRequest) -> Result<()> {
        if let AccessType::Block = r.volume_capability.access_type {
            return Err(invalid("scratch volumes are directories".into()));
        }
        let options = options(&r)?;
        if target.is_mounted()? {
            return Ok(());
        }
        tmpfs::mount_onto(&target, options)?;
        if r.readonly {
            target.remount_read_only()?;
        }
        Ok(())
    }

    fn unpublish(target: Target, _r: UnpublishRequest) -> Result<()> {
        target.unmount()
    }

    fn volume_stats(volume: Target, _r: VolumeStatsRequest) -> Result<VolumeStats> {
        Ok(VolumeStats::of_filesystem(&volume.statvfs()?))
    }

    fn node_info() -> Result<NodeInfo> {
        Ok(NodeInfo {
            node_id: String::new(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        })
    }
}

export_driver!(Scratch);

#[cfg(test)]
mod tests {
    use super::*;

    use wasmvol_driver_sdk::fake_host::requests::{self, block, filesystem};
    use wasmvol_driver_sdk::fake_host::{FakeHost, Mount, MountSource};

    fn ephemeral(context: &[(&str, &str)]) -> Volume {
        Volume {
            volume_id: "csi-0123".into(),
            capacity_bytes: 0,
            volume_context: context
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            content_source: None,
            accessible_topology: Vec::new(),
        }
    }

    #[test]
    fn an_inline_volume_is_a_tmpfs_of_the_pods_size_and_owner_once_mounted() {
        let host = FakeHost::new();
        let pod = || host.target("pod", TargetRole::Publish, TargetShape::Directory);
        let v = ephemeral(&[("size", "16Mi"), ("mode", "0750"), ("uid", "1000")]);
        let mut cap = filesystem("");
        if let AccessType::Mount(m) = &mut cap.access_type {
            m.volume_mount_group = "2000".into();
        }
        Scratch::publish(pod(), None, requests::publish(&v, cap.clone(), true)).unwrap();
        Scratch::publish(pod(), None, requests::publish(&v, cap, true)).unwrap();
        let options = TmpfsOptions {
            size_bytes: 16 << 20,
            mode: 0o750,
            uid: 1000,
            gid: 2000,
        };
        assert_eq!(
            host.mounts("pod"),
            [Mount {
                source: MountSource::Tmpfs(options),
                read_only: true
            }]
        );
        Scratch::unpublish(pod(), requests::unpublish("csi-0123")).unwrap();
        assert!(host.mounted().is_empty());
    }

    #[test]
    fn a_bad_size_or_raw_block_mounts_nothing() {
        let host = FakeHost::new();
        for (v, cap) in [
            (ephemeral(&[("size", "16M")]), filesystem("")),
            (ephemeral(&[]), block()),
        ] {
            let e = Scratch::publish(
                host.target("pod", TargetRole::Publish, TargetShape::Directory),
                None,
                requests::publish(&v, cap, false),
            )
            .unwrap_err();
            assert!(matches!(e, DriverError::InvalidArgument(_)), "{e:?}");
        }
        assert!(host.mounted().is_empty());
    }

    #[test]
    fn sizes_parse_with_binary_suffixes_only() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("16Mi").unwrap(), 16 << 20);
        assert_eq!(parse_size("1Gi").unwrap(), 1 << 30);
        for bad in ["", "0", "16M", "-1", "1Ti", "99999999999999999999Gi", "Mi"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
