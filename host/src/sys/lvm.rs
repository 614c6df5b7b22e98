//! LVM, run by the host: `lvm` with an argv built from validated names and
//! byte sizes, an empty environment and no shell. Ownership lives in the
//! LVM metadata itself: every logical volume the host makes for a driver
//! carries the tag `wasmvol.owner.<driver>`, so it survives a host restart,
//! and a driver only ever sees, opens or changes volumes with its own tag.

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;

use super::fstools::{checked, run_with_env};

/// Longest volume group or logical volume name the host passes.
const MAX_NAME: usize = 100;

fn check_name(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
        // LVM's own sub-volume and snapshot names.
        && !["_cdata", "_cmeta", "_corig", "_mlog", "_mimage", "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vorigin", "_vdata"]
            .iter()
            .any(|r| s.contains(r))
        && !s.starts_with("snapshot")
        && !s.starts_with("pvmove");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` must be 1 to {MAX_NAME} letters, digits, `_`, `.`, `+` or `-`, \
             starting with a letter or digit",
            s.chars()
                .take(64)
                .flat_map(char::escape_default)
                .collect::<String>()
        ))
    }
}

/// A checked volume group name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VgName(String);

impl VgName {
    /// Validates a volume group name.
    pub fn parse(s: &str) -> Result<Self, String> {
        check_name("volume group", s).map(|()| Self(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checked logical volume (or thin pool) name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LvName(String);

impl LvName {
    /// Validates a logical volume name.
    pub fn parse(s: &str) -> Result<Self, String> {
        check_name("logical volume", s).map(|()| Self(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The ownership tag of a driver's logical volumes.
pub fn owner_tag(driver: &str) -> String {
    format!("wasmvol.owner.{driver}")
}

/// What a logical volume is made as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Fully allocated in the group.
    Thick,
    /// Thinly provisioned in this pool.
    Thin(LvName),
}

/// One logical volume as `lvs` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalVolume {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The thin pool it lives in, if thin.
    pub pool: Option<String>,
    /// The volume it is a snapshot of, if any.
    pub origin: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// The device-mapper node of `vg/lv` (`/dev/mapper/<vg>-<lv>`, each `-` doubled).
pub fn node(vg: &VgName, lv: &LvName) -> PathBuf {
    PathBuf::from(format!(
        "/dev/mapper/{}-{}",
        vg.0.replace('-', "--"),
        lv.0.replace('-', "--")
    ))
}

fn full(vg: &VgName, lv: &LvName) -> String {
    format!("{}/{}", vg.0, lv.0)
}

/// The argv (after `lvm`) of each operation: pure, so it is tested as built.
pub mod argv {
    use super::*;

    /// `lvcreate` of a new, tagged, active volume.
    pub fn create(vg: &VgName, lv: &LvName, size: u64, layout: &Layout, tag: &str) -> Vec<String> {
        let mut a: Vec<String> = ["lvcreate", "--yes", "--wipesignatures", "y", "--name"]
            .map(String::from)
            .into();
        a.push(lv.0.clone());
        a.extend(["--addtag".into(), tag.to_owned()]);
        match layout {
            Layout::Thick => {
                a.extend([
                    "--size".into(),
                    format!("{size}b"),
                    "--".into(),
                    vg.0.clone(),
                ]);
            }
            Layout::Thin(pool) => {
                a.extend([
                    "--virtualsize".into(),
                    format!("{size}b"),
                    "--thin".into(),
                    "--".into(),
                    full(vg, pool),
                ]);
            }
        }
        a
    }

    /// `lvcreate --snapshot`: thin when `size` is `None` (of a thin origin), else copy-on-write.
    pub fn snapshot(
        vg: &VgName,
        origin: &LvName,
        name: &LvName,
        size: Option<u64>,
        tag: &str,
    ) -> Vec<String> {
        let mut a: Vec<String> = [
            "lvcreate",
            "--yes",
            "--snapshot",
            "--setactivationskip",
            "n",
            "--name",
        ]
        .map(String::from)
        .into();
        a.push(name.0.clone());
        a.extend(["--addtag".into(), tag.to_owned()]);
        if let Some(size) = size {
            a.extend(["--size".into(), format!("{size}b")]);
        }
        a.extend(["--".into(), full(vg, origin)]);
        a
    }

    /// `lvchange --activate y`, also for a snapshot skipped at activation.
    pub fn activate(vg: &VgName, lv: &LvName) -> Vec<String> {
        [
            "lvchange",
            "--activate",
            "y",
            "--ignoreactivationskip",
            "--",
        ]
        .map(String::from)
        .into_iter()
        .chain([full(vg, lv)])
        .collect()
    }

    /// `lvremove`.
    pub fn remove(vg: &VgName, lv: &LvName) -> Vec<String> {
        ["lvremove", "--yes", "--"]
            .map(String::from)
            .into_iter()
            .chain([full(vg, lv)])
            .collect()
    }

    /// `lvrename` within a group.
    pub fn rename(vg: &VgName, from: &LvName, to: &LvName) -> Vec<String> {
        vec![
            "lvrename".into(),
            "--".into(),
            vg.0.clone(),
            from.0.clone(),
            to.0.clone(),
        ]
    }

    /// `lvextend` to `size` bytes.
    pub fn extend(vg: &VgName, lv: &LvName, size: u64) -> Vec<String> {
        vec![
            "lvextend".into(),
            "--size".into(),
            format!("{size}b"),
            "--".into(),
            full(vg, lv),
        ]
    }

    /// `lvs` of a group, as JSON, sizes in bytes.
    pub fn list(vg: &VgName) -> Vec<String> {
        [
            "lvs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "lv_name,lv_size,pool_lv,origin,lv_tags,vg_seqno,vg_uuid",
            "--",
        ]
        .map(String::from)
        .into_iter()
        .chain([vg.0.clone()])
        .collect()
    }

    /// `vgs` of a group's free bytes.
    pub fn free(vg: &VgName) -> Vec<String> {
        [
            "vgs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_free",
            "--",
        ]
        .map(String::from)
        .into_iter()
        .chain([vg.0.clone()])
        .collect()
    }

    /// `vgs` of a group's commit counter and id (for a group with no volumes).
    pub fn commit(vg: &VgName) -> Vec<String> {
        [
            "vgs",
            "--reportformat",
            "json",
            "-o",
            "vg_seqno,vg_uuid",
            "--",
        ]
        .map(String::from)
        .into_iter()
        .chain([vg.0.clone()])
        .collect()
    }

    /// `pvs` of every physical volume and its group.
    pub fn physical_volumes() -> Vec<String> {
        ["pvs", "--reportformat", "json", "-o", "pv_name,vg_name"]
            .map(String::from)
            .into()
    }
}

/// Runs `lvm` with `args`. Without a udev daemon on the node, device-mapper
/// is told not to wait for one.
fn lvm(args: &[String]) -> io::Result<std::process::Output> {
    let os: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let mut env = vec![("LVM_SUPPRESS_FD_WARNINGS", "1")];
    if !std::path::Path::new("/run/udev/control").exists() {
        env.push(("DM_DISABLE_UDEV", "1"));
    }
    checked(&format!("lvm {}", args[0]), run_with_env("lvm", &os, &env)?)
}

/// Creates a tagged, active logical volume.
pub fn create(vg: &VgName, lv: &LvName, size: u64, layout: &Layout, tag: &str) -> io::Result<()> {
    lvm(&argv::create(vg, lv, size, layout, tag)).map(|_| ())
}

/// Snapshots `origin` as `name` (thin when `size` is `None`), active
/// (`--setactivationskip n` keeps a thin snapshot from being skipped).
pub fn snapshot(
    vg: &VgName,
    origin: &LvName,
    name: &LvName,
    size: Option<u64>,
    tag: &str,
) -> io::Result<()> {
    lvm(&argv::snapshot(vg, origin, name, size, tag)).map(|_| ())
}

/// Activates a volume (after a reboot, its node may be gone).
pub fn activate(vg: &VgName, lv: &LvName) -> io::Result<()> {
    lvm(&argv::activate(vg, lv)).map(|_| ())
}

/// Removes a logical volume.
pub fn remove(vg: &VgName, lv: &LvName) -> io::Result<()> {
    lvm(&argv::remove(vg, lv)).map(|_| ())
}

/// Renames a logical volume within its group.
pub fn rename(vg: &VgName, from: &LvName, to: &LvName) -> io::Result<()> {
    lvm(&argv::rename(vg, from, to)).map(|_| ())
}

/// Grows a logical volume to `size` bytes.
pub fn extend(vg: &VgName, lv: &LvName, size: u64) -> io::Result<()> {
    lvm(&argv::extend(vg, lv, size)).map(|_| ())
}

/// Size in bytes of a block device node.
pub fn size_of(node: &std::path::Path) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
    let file = std::fs::File::open(node)?;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which outlives the call.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

fn report(out: &[u8], key: &str) -> io::Result<Vec<serde_json::Value>> {
    let v: serde_json::Value = serde_json::from_slice(out).map_err(io::Error::other)?;
    Ok(v["report"][0][key].as_array().cloned().unwrap_or_default())
}

fn text(v: &serde_json::Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().trim().to_owned()
}

/// One `lvs` of a group: its volumes and the commit they were read at.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Every logical volume of the group.
    pub volumes: Vec<LogicalVolume>,
    /// The group's commit counter (`vg_seqno`) of this listing.
    pub seqno: u64,
    /// The group's id (`vg_uuid`).
    pub vg_id: String,
}

/// Lists a group's volumes with the commit they were read at.
pub fn list_group(vg: &VgName) -> io::Result<Listing> {
    let out = lvm(&argv::list(vg))?;
    let rows = report(&out.stdout, "lv")?;
    // No volumes, no rows to read the commit from: ask the group itself.
    let commit_row = match rows.first() {
        Some(r) => r.clone(),
        None => report(&lvm(&argv::commit(vg))?.stdout, "vg")?
            .first()
            .cloned()
            .ok_or_else(|| io::Error::other(format!("vgs reported nothing for {}", vg.0)))?,
    };
    Ok(Listing {
        volumes: rows
            .iter()
            .map(|v| LogicalVolume {
                name: text(v, "lv_name"),
                size: text(v, "lv_size").parse().unwrap_or(0),
                pool: Some(text(v, "pool_lv")).filter(|s| !s.is_empty()),
                origin: Some(text(v, "origin")).filter(|s| !s.is_empty()),
                tags: text(v, "lv_tags")
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
            .collect(),
        seqno: text(&commit_row, "vg_seqno")
            .parse()
            .map_err(|_| io::Error::other("lvs reported no vg_seqno"))?,
        vg_id: text(&commit_row, "vg_uuid"),
    })
}

/// The physical volumes of a group, as LVM names them.
pub fn physical_volumes(vg: &VgName) -> io::Result<Vec<PathBuf>> {
    let out = lvm(&argv::physical_volumes())?;
    Ok(report(&out.stdout, "pv")?
        .iter()
        .filter(|p| text(p, "vg_name") == vg.0)
        .map(|p| PathBuf::from(text(p, "pv_name")))
        .collect())
}

/// The group's unallocated bytes.
pub fn free(vg: &VgName) -> io::Result<u64> {
    let out = lvm(&argv::free(vg))?;
    report(&out.stdout, "vg")?
        .first()
        .and_then(|v| text(v, "vg_free").parse().ok())
        .ok_or_else(|| io::Error::other(format!("vgs reported no free space for {}", vg.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_be_arguments_or_paths_are_refused() {
        for bad in [
            "",
            "-",
            "--",
            "-n",
            "--help",
            "a b",
            "a/b",
            "../x",
            ".",
            "..",
            "vg;rm",
            "a\nb",
            "lv_tmeta",
            "snapshot0",
            "pvmove1",
            "é",
        ] {
            assert!(LvName::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["pvc-1", "kube_vg", "a.b+c", "Vol1"] {
            assert!(LvName::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn argv_is_built_from_checked_names_with_the_names_after_the_end_of_options() {
        let vg = VgName::parse("kube_vg").unwrap();
        let lv = LvName::parse("pvc-1").unwrap();
        let tag = owner_tag("lvm");
        assert_eq!(
            argv::create(&vg, &lv, 1 << 30, &Layout::Thick, &tag),
            [
                "lvcreate",
                "--yes",
                "--wipesignatures",
                "y",
                "--name",
                "pvc-1",
                "--addtag",
                "wasmvol.owner.lvm",
                "--size",
                "1073741824b",
                "--",
                "kube_vg"
            ]
        );
        let pool = LvName::parse("pool0").unwrap();
        let thin = argv::create(&vg, &lv, 4096, &Layout::Thin(pool), &tag);
        assert_eq!(thin[thin.len() - 2..], ["--", "kube_vg/pool0"]);
        assert!(thin.contains(&"--thin".to_string()));
        let snap = LvName::parse("snap-1").unwrap();
        let s = argv::snapshot(&vg, &lv, &snap, None, &tag);
        assert!(
            !s.contains(&"--size".to_string()),
            "a thin snapshot has no size"
        );
        assert_eq!(s.last().unwrap(), "kube_vg/pvc-1");
        assert_eq!(
            argv::rename(&vg, &lv, &snap),
            ["lvrename", "--", "kube_vg", "pvc-1", "snap-1"]
        );
        assert_eq!(
            argv::remove(&vg, &lv),
            ["lvremove", "--yes", "--", "kube_vg/pvc-1"]
        );
        assert_eq!(
            node(&VgName::parse("a-b").unwrap(), &lv),
            PathBuf::from("/dev/mapper/a--b-pvc--1")
        );
    }

    #[test]
    fn reports_parse_into_volumes() {
        let out = br#"{"report":[{"lv":[{"lv_name":"pvc-1","lv_size":"1073741824","pool_lv":"","origin":"","lv_tags":"wasmvol.owner.lvm,x"}]}]}"#;
        let lvs = report(out, "lv").unwrap();
        assert_eq!(text(&lvs[0], "lv_name"), "pvc-1");
        assert_eq!(text(&lvs[0], "lv_tags"), "wasmvol.owner.lvm,x");
    }
}
