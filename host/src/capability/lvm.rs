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
use crate::sys::lvm::{self, Layout, LogicalVolume, LvName, VgName};

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
    /// Lists `vg` once for this use.
    fn group(&self, vg: &VgName) -> Result<Group, CapError> {
        Ok(Group {
            vg: vg.clone(),
            volumes: lvm::list(vg).map_err(|e| io_error("lvs", e))?,
            tag: lvm::owner_tag(self.driver()),
        })
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
            let listed = ctx.group(&vg)?;
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
            if layout == Layout::Thick {
                let free = lvm::free(&vg).map_err(|e| io_error("vgs", e))?;
                if size_bytes > free {
                    return Err(CapError::Failed(DriverError::ResourceExhausted(format!(
                        "{size_bytes} bytes requested, {free} free in {}",
                        vg.as_str()
                    ))));
                }
            }
            lvm::create(&vg, &lv, size_bytes, &layout, &lvm::owner_tag(ctx.driver()))
                .map_err(|e| lvm_error("lvcreate", e))
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
                let listed = ctx.group(&vg)?;
                let source = listed.volume(&origin_lv)?.ok_or_else(|| {
                    CapError::Failed(DriverError::NotFound(format!("no volume {group}/{origin}")))
                })?;
                if listed.volume(&snap)?.is_some() {
                    return Ok(());
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
                lvm::snapshot(&vg, &origin_lv, &snap, size, &lvm::owner_tag(ctx.driver()))
                    .map_err(|e| lvm_error("lvcreate --snapshot", e))
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
                let listed = ctx.group(&vg)?;
                let v = listed.volume(&lv)?.ok_or_else(|| {
                    CapError::Failed(DriverError::NotFound(format!("no volume {group}/{name}")))
                })?;
                if size_bytes <= v.size {
                    return Ok(v.size);
                }
                ctx.within_cap(&listed, size_bytes - v.size)?;
                lvm::extend(&vg, &lv, size_bytes).map_err(|e| lvm_error("lvextend", e))?;
                Ok(ctx.group(&vg)?.volume(&lv)?.map_or(size_bytes, |v| v.size))
            }),
        )
    }

    fn remove(&mut self, group: String, name: String) -> wasmtime::Result<Result<(), DriverError>> {
        let args = json!({"group": group, "name": name});
        Ok(
            self.gate(CapOp::LvmRemove, &[Need::LvmGroup(&group)], args, |ctx| {
                let (vg, lv) = names(&group, &name)?;
                match ctx.group(&vg)?.volume(&lv)? {
                    None => Ok(()),
                    Some(_) => lvm::remove(&vg, &lv).map_err(|e| io_error("lvremove", e)),
                }
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
                Ok(ctx.group(&vg)?.owned().cloned().map(Into::into).collect())
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
                ctx.group(&vg)?.volume(&lv)?.ok_or_else(|| {
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
                ctx.table
                    .push(BlockDeviceHandle::logical_volume(node, meta.rdev()))
                    .map_err(|e| CapError::Failed(DriverError::ResourceExhausted(e.to_string())))
            }),
        )
    }
}
