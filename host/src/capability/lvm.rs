//! `wasmvol:driver/lvm`: logical volumes in granted volume groups, owned by
//! the driver through a tag in the LVM metadata.
//!
//! Every use names a group; the gate refuses a group (or thin pool) the
//! grant does not name before anything runs. Names are parsed into
//! [`VgName`]/[`LvName`] (no leading `-`, no `/`, no spaces: nothing that
//! could be an option or a path), the driver's volumes are found by its
//! owner tag, and the grant's `max_bytes` bounds what they add up to.

use serde_json::json;
use wasmtime::component::Resource;

use crate::bindings::lvm::{Host, LogicalVolume as WitVolume};
use crate::bindings::DriverError;
use crate::capability::context::{io_error, CallContext, CapError};
use crate::capability::device::BlockDeviceHandle;
use crate::capability::table::{CapOp, Need};
use crate::sys::block_copy::{self, CopyError};
use crate::sys::lvm::{self, Layout, LogicalVolume, LvName, VgName};
use crate::sys::lvm_groups::Known;

fn invalid(m: String) -> CapError {
    CapError::Failed(DriverError::InvalidArgument(m))
}

fn names(group: &str, name: &str) -> Result<(VgName, LvName), CapError> {
    Ok((
        VgName::parse(group).map_err(invalid)?,
        LvName::parse(name).map_err(invalid)?,
    ))
}

/// An LVM failure as the driver sees it: running out of space is
/// RESOURCE_EXHAUSTED, anything else an internal error with LVM's words.
fn lvm_error(what: &str, e: std::io::Error) -> CapError {
    let text = e.to_string();
    if text.contains("insufficient") || text.contains("Insufficient") {
        CapError::Failed(DriverError::ResourceExhausted(format!("{what}: {text}")))
    } else {
        io_error(what, e)
    }
}

/// The names of copies in progress (`lvm.copy`), never listed as volumes.
const COPY_PREFIX: &str = "wasmvol-copy-";

/// One `lvs` of a group, read as this driver sees it: every decision of
/// one call (does the volume exist, is it ours, how much do ours use) comes
/// from the same listing.
struct Group {
    vg: VgName,
    volumes: Vec<LogicalVolume>,
    tag: String,
}

impl Group {
    /// This driver's volumes.
    fn owned(&self) -> impl Iterator<Item = &LogicalVolume> {
        self.volumes.iter().filter(|v| v.tags.contains(&self.tag))
    }

    /// The driver's volume `lv`, `None` when there is no volume of that
    /// name, and a denial when the volume is not the driver's.
    fn volume(&self, lv: &LvName) -> Result<Option<&LogicalVolume>, CapError> {
        match self.volumes.iter().find(|v| v.name == lv.as_str()) {
            None => Ok(None),
            Some(v) if v.tags.contains(&self.tag) => Ok(Some(v)),
            Some(_) => Err(CapError::Denied(format!(
                "logical volume {}/{} is not this driver's",
                self.vg.as_str(),
                lv.as_str()
            ))),
        }
    }
}

impl CallContext {
    /// Runs `f` with `vg` as this driver sees it, holding the group's lock:
    /// every decision of one use (does the volume exist, is it ours, how
    /// much do ours use) comes from the same current listing, and no other
    /// call changes the group in between.
    fn with_group<R>(
        &self,
        vg: &VgName,
        f: impl FnOnce(&Self, Group, &mut Known) -> Result<R, CapError>,
    ) -> Result<R, CapError> {
        let env = self.env.clone();
        env.lvm_groups.with(vg, |known| {
            let volumes = known.volumes().map_err(|e| io_error("lvs", e))?.to_vec();
            let group = Group {
                vg: vg.clone(),
                volumes,
                tag: lvm::owner_tag(self.driver()),
            };
            f(self, group, known)
        })
    }

    /// Whether a create that failed lost a race to the same create (one
    /// still running from a host killed mid-call, or a concurrent repeat):
    /// the volume is there now, this driver's, and as asked for.
    fn made_meanwhile(
        &self,
        known: &mut Known,
        group: &Group,
        lv: &LvName,
        as_asked: impl FnOnce(&LogicalVolume) -> bool,
    ) -> Option<()> {
        known.forget();
        let again = Group {
            volumes: known.volumes().ok()?.to_vec(),
            vg: group.vg.clone(),
            tag: group.tag.clone(),
        };
        let made = again.volume(lv).ok()??;
        as_asked(made).then_some(())
    }

    /// Refuses growing the driver's volumes in the group by `more` bytes past the grant.
    fn within_cap(&self, group: &Group, more: u64) -> Result<(), CapError> {
        let max = self
            .env
            .policy
            .grants
            .lvm
            .as_ref()
            .and_then(|l| l.group(group.vg.as_str()))
            .map_or(0, |g| g.max_bytes);
        let used: u64 = group.owned().map(|v| v.size).sum();
        if used.saturating_add(more) > max {
            return Err(CapError::Denied(format!(
                "{more} more bytes in {} exceeds grants.lvm max_bytes ({max}; {used} used)",
                group.vg.as_str()
            )));
        }
        Ok(())
    }
}

/// The size the kernel gives a volume's device (what `lvs` reports too).
fn device_size(vg: &VgName, lv: &LvName) -> Option<u64> {
    lvm::size_of(&lvm::node(vg, lv)).ok()
}

impl From<LogicalVolume> for WitVolume {
    fn from(v: LogicalVolume) -> Self {
        WitVolume {
            name: v.name,
            size_bytes: v.size,
            thin_pool: v.pool,
            origin: v.origin,
        }
    }
}

impl Host for CallContext {
    fn create(
        &mut self,
        group: String,
        name: String,
        size_bytes: u64,
        thin_pool: Option<String>,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let args =
            json!({"group": group, "name": name, "size": size_bytes, "thin_pool": thin_pool});
        let mut needs = vec![Need::LvmGroup(&group)];
        if let Some(pool) = &thin_pool {
            needs.push(Need::ThinPool(&group, pool));
        }
        Ok(self.gate(CapOp::LvmCreate, &needs, args, |ctx| {
            let (vg, lv) = names(&group, &name)?;
            let layout = match &thin_pool {
                None => Layout::Thick,
                Some(p) => Layout::Thin(LvName::parse(p).map_err(invalid)?),
            };
            if size_bytes == 0 {
                return Err(invalid("a logical volume needs a size above 0".into()));
            }
            ctx.with_group(&vg, |ctx, listed, known| {
                if let Some(existing) = listed.volume(&lv)? {
                    // A repeat of the same create finds what the first made.
                    return if existing.size >= size_bytes && existing.pool == thin_pool {
                        Ok(())
                    } else {
                        Err(CapError::Failed(DriverError::AlreadyExists(format!(
                            "{}/{} exists with another size or pool",
                            vg.as_str(),
                            lv.as_str()
                        ))))
                    };
                }
                ctx.within_cap(&listed, size_bytes)?;
                // Too little free space is lvcreate's to find (it makes
                // nothing then), and comes back RESOURCE_EXHAUSTED.
                match lvm::create(&vg, &lv, size_bytes, &layout, &listed.tag) {
                    Ok(()) => {
                        // Thick: one commit; thin: the pool's too.
                        let commits = if thin_pool.is_some() { 2 } else { 1 };
                        known.changed(commits, |volumes| {
                            let Some(size) = device_size(&vg, &lv) else {
                                return false;
                            };
                            volumes.push(LogicalVolume {
                                name: lv.as_str().to_owned(),
                                size,
                                pool: thin_pool.clone(),
                                origin: None,
                                tags: vec![listed.tag.clone()],
                            });
                            true
                        });
                        Ok(())
                    }
                    Err(e) => ctx
                        .made_meanwhile(known, &listed, &lv, |v| {
                            v.size >= size_bytes && v.pool == thin_pool
                        })
                        .ok_or_else(|| lvm_error("lvcreate", e)),
                }
            })
        }))
    }

    fn snapshot(
        &mut self,
        group: String,
        origin: String,
        name: String,
        size_bytes: Option<u64>,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let args = json!({"group": group, "origin": origin, "name": name, "size": size_bytes});
        Ok(
            self.gate(CapOp::LvmSnapshot, &[Need::LvmGroup(&group)], args, |ctx| {
                let (vg, snap) = names(&group, &name)?;
                let origin_lv = LvName::parse(&origin).map_err(invalid)?;
                ctx.with_group(&vg, |ctx, listed, known| {
                    let source = listed.volume(&origin_lv)?.ok_or_else(|| {
                        CapError::Failed(DriverError::NotFound(format!(
                            "no volume {group}/{origin}"
                        )))
                    })?;
                    if let Some(existing) = listed.volume(&snap)? {
                        // A repeat is done already; the name taken by
                        // anything else is not this snapshot.
                        return if existing.origin.as_deref() == Some(origin_lv.as_str()) {
                            Ok(())
                        } else {
                            Err(CapError::Failed(DriverError::AlreadyExists(format!(
                                "{group}/{name} exists and is not a snapshot of {origin}"
                            ))))
                        };
                    }
                    // A thin origin makes a thin snapshot (no size); a thick one a
                    // copy-on-write snapshot with room for `size_bytes` of changes.
                    let size = match (&source.pool, size_bytes) {
                        (Some(_), _) => None,
                        (None, Some(s)) if s > 0 => Some(s),
                        (None, _) => {
                            return Err(invalid(
                                "a snapshot of a thick volume needs a size for its changes".into(),
                            ))
                        }
                    };
                    ctx.within_cap(&listed, size.unwrap_or(source.size))?;
                    let made = lvm::snapshot(&vg, &origin_lv, &snap, size, &listed.tag);
                    // Snapshots are rare: the next use lists the group again.
                    known.forget();
                    made.or_else(|e| {
                        ctx.made_meanwhile(known, &listed, &snap, |v| {
                            v.origin.as_deref() == Some(origin_lv.as_str())
                        })
                        .ok_or_else(|| lvm_error("lvcreate --snapshot", e))
                    })
                })
            }),
        )
    }

    fn extend(
        &mut self,
        group: String,
        name: String,
        size_bytes: u64,
    ) -> wasmtime::Result<Result<u64, DriverError>> {
        let args = json!({"group": group, "name": name, "size": size_bytes});
        Ok(
            self.gate(CapOp::LvmExtend, &[Need::LvmGroup(&group)], args, |ctx| {
                let (vg, lv) = names(&group, &name)?;
                ctx.with_group(&vg, |ctx, listed, known| {
                    let v = listed.volume(&lv)?.ok_or_else(|| {
                        CapError::Failed(DriverError::NotFound(format!("no volume {group}/{name}")))
                    })?;
                    if size_bytes <= v.size {
                        return Ok(v.size);
                    }
                    ctx.within_cap(&listed, size_bytes - v.size)?;
                    if let Err(e) = lvm::extend(&vg, &lv, size_bytes) {
                        known.forget();
                        return Err(lvm_error("lvextend", e));
                    }
                    let grown = device_size(&vg, &lv).unwrap_or(size_bytes);
                    let commits = if v.pool.is_some() { 2 } else { 1 };
                    known.changed(commits, |volumes| {
                        volumes
                            .iter_mut()
                            .find(|x| x.name == lv.as_str())
                            .map(|x| x.size = grown)
                            .is_some()
                    });
                    Ok(grown)
                })
            }),
        )
    }

    fn copy(
        &mut self,
        group: String,
        source: String,
        name: String,
        size_bytes: u64,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let args = json!({"group": group, "source": source, "name": name, "size": size_bytes});
        Ok(
            self.gate(CapOp::LvmCopy, &[Need::LvmGroup(&group)], args, |ctx| {
                let (vg, lv) = names(&group, &name)?;
                let source_lv = LvName::parse(&source).map_err(invalid)?;
                // The copy is made under a name of the host's and renamed
                // once whole: a volume under `name` is never a torn copy,
                // even after a host killed mid-copy.
                let digest = crate::digest::Sha256Digest::of(name.as_bytes()).to_hex();
                let partial =
                    LvName::parse(&format!("{COPY_PREFIX}{}", &digest[..16])).map_err(invalid)?;
                // The group's lock is held to decide and make the partial
                // volume, and to rename it, not through the copy, which may
                // take minutes: other uses of the group go on meanwhile.
                let made = ctx.with_group(&vg, |ctx, listed, known| {
                    let from = listed.volume(&source_lv)?.ok_or_else(|| {
                        CapError::Failed(DriverError::NotFound(format!(
                            "no volume {group}/{source}"
                        )))
                    })?;
                    let size = size_bytes.max(from.size);
                    if let Some(existing) = listed.volume(&lv)? {
                        return if existing.size >= size && existing.pool.is_none() {
                            Ok(false)
                        } else {
                            Err(CapError::Failed(DriverError::AlreadyExists(format!(
                                "{group}/{name} exists with another size or pool"
                            ))))
                        };
                    }
                    let leftover = listed.volume(&partial)?.map(|v| v.size).unwrap_or(0);
                    ctx.within_cap(&listed, size.saturating_sub(leftover))?;
                    known.forget();
                    if leftover > 0 {
                        lvm::remove(&vg, &partial).map_err(|e| io_error("lvremove", e))?;
                    }
                    lvm::create(&vg, &partial, size, &Layout::Thick, &listed.tag)
                        .map_err(|e| lvm_error("lvcreate", e))?;
                    Ok(true)
                })?;
                if !made {
                    return Ok(());
                }
                let copied = block_copy::copy(
                    &lvm::node(&vg, &source_lv),
                    &lvm::node(&vg, &partial),
                    ctx.deadline,
                );
                ctx.with_group(&vg, |_, _, known| {
                    known.forget();
                    let Err(e) = copied else {
                        return lvm::rename(&vg, &partial, &lv)
                            .map_err(|e| io_error("lvrename", e));
                    };
                    let _ = lvm::remove(&vg, &partial);
                    Err(match e {
                        CopyError::InUse(what) => {
                            CapError::Failed(DriverError::FailedPrecondition(format!(
                                "{what}: a volume is copied only while nothing uses it"
                            )))
                        }
                        CopyError::Io(e) => io_error("copy", e),
                        other => CapError::Failed(DriverError::Aborted(other.to_string())),
                    })
                })
            }),
        )
    }

    fn remove(&mut self, group: String, name: String) -> wasmtime::Result<Result<(), DriverError>> {
        let args = json!({"group": group, "name": name});
        Ok(
            self.gate(CapOp::LvmRemove, &[Need::LvmGroup(&group)], args, |ctx| {
                let (vg, lv) = names(&group, &name)?;
                ctx.with_group(&vg, |_, listed, known| {
                    let Some(v) = listed.volume(&lv)? else {
                        return Ok(());
                    };
                    // A plain thick volume is one commit; a thin volume or a
                    // snapshot also changes its pool or origin.
                    let commits = if v.pool.is_some() || v.origin.is_some() {
                        2
                    } else {
                        1
                    };
                    if let Err(e) = lvm::remove(&vg, &lv) {
                        known.forget();
                        return Err(io_error("lvremove", e));
                    }
                    known.changed(commits, |volumes| {
                        volumes.retain(|x| x.name != lv.as_str());
                        true
                    });
                    Ok(())
                })
            }),
        )
    }

    fn list_volumes(
        &mut self,
        group: String,
    ) -> wasmtime::Result<Result<Vec<WitVolume>, DriverError>> {
        let args = json!({"group": group});
        Ok(self.gate(
            CapOp::LvmListVolumes,
            &[Need::LvmGroup(&group)],
            args,
            |ctx| {
                let vg = VgName::parse(&group).map_err(invalid)?;
                ctx.with_group(&vg, |_, listed, _| {
                    Ok(listed
                        .owned()
                        .filter(|v| !v.name.starts_with(COPY_PREFIX))
                        .cloned()
                        .map(Into::into)
                        .collect())
                })
            },
        ))
    }

    fn free_bytes(&mut self, group: String) -> wasmtime::Result<Result<u64, DriverError>> {
        let args = json!({"group": group});
        Ok(
            self.gate(CapOp::LvmFreeBytes, &[Need::LvmGroup(&group)], args, |_| {
                let vg = VgName::parse(&group).map_err(invalid)?;
                lvm::free(&vg).map_err(|e| io_error("vgs", e))
            }),
        )
    }

    fn open(
        &mut self,
        group: String,
        name: String,
    ) -> wasmtime::Result<Result<Resource<BlockDeviceHandle>, DriverError>> {
        let args = json!({"group": group, "name": name});
        Ok(
            self.gate(CapOp::LvmOpen, &[Need::LvmGroup(&group)], args, |ctx| {
                let (vg, lv) = names(&group, &name)?;
                // Held through the open: the volume cannot be removed and
                // replaced by another between the check and the node.
                let (node, rdev) = ctx.with_group(&vg, |_, listed, _| {
                    listed.volume(&lv)?.ok_or_else(|| {
                        CapError::Failed(DriverError::NotFound(format!("no volume {group}/{name}")))
                    })?;
                    let node = lvm::node(&vg, &lv);
                    if !node.exists() {
                        lvm::activate(&vg, &lv).map_err(|e| io_error("lvchange", e))?;
                    }
                    use std::os::unix::fs::{FileTypeExt, MetadataExt};
                    let meta = std::fs::metadata(&node).map_err(|e| io_error("device node", e))?;
                    if !meta.file_type().is_block_device() {
                        return Err(CapError::Denied(format!(
                            "{} is not a block device",
                            node.display()
                        )));
                    }
                    Ok((node, meta.rdev()))
                })?;
                ctx.table
                    .push(BlockDeviceHandle::logical_volume(node, rdev))
                    .map_err(|e| CapError::Failed(DriverError::ResourceExhausted(e.to_string())))
            }),
        )
    }
}
