//! `lvm`: volume groups the test adds ([`super::FakeHost::add_volume_group`])
//! and logical volumes in them, with the host's idempotence: a repeated
//! create or snapshot finds what the first made, removing nothing is success.

use super::device::BlockDevice;
use super::world::{self, Group, Lv, World};
use crate::DriverError;

/// A logical volume.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalVolume {
    /// Its name.
    pub name: String,
    /// Its size.
    pub size_bytes: u64,
    /// The thin pool it is in, if thin.
    pub thin_pool: Option<String>,
    /// The volume it is a snapshot of, if one.
    pub origin: Option<String>,
}

fn group<'w>(w: &'w mut World, name: &str) -> Result<&'w mut Group, DriverError> {
    w.groups
        .get_mut(name)
        .ok_or_else(|| DriverError::NotFound(format!("no volume group {name}")))
}

/// The error for a volume `group/name` that is not there.
pub(crate) fn no_volume(group: &str, name: &str) -> DriverError {
    DriverError::NotFound(format!("no volume {group}/{name}"))
}

fn check_name(name: &str) -> Result<(), DriverError> {
    let ok = !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(DriverError::InvalidArgument(format!(
            "`{name}` is not a logical volume name"
        )))
    }
}

fn add(g: &mut Group, listed: LogicalVolume, fs: Option<crate::FsType>) -> Result<(), DriverError> {
    if listed.thin_pool.is_none() && listed.size_bytes > g.free() {
        return Err(DriverError::ResourceExhausted(format!(
            "{} bytes asked, {} free",
            listed.size_bytes,
            g.free()
        )));
    }
    g.volumes.insert(listed.name.clone(), Lv { listed, fs });
    Ok(())
}

/// Create a volume (thin in `thin_pool` when given).
pub fn create(
    group_name: &str,
    name: &str,
    size_bytes: u64,
    thin_pool: Option<&str>,
) -> Result<(), DriverError> {
    check_name(name)?;
    if size_bytes == 0 {
        return Err(DriverError::InvalidArgument(
            "a logical volume needs a size above 0".into(),
        ));
    }
    world::with(|w| {
        let g = group(w, group_name)?;
        if let Some(v) = g.volumes.get(name) {
            return if v.listed.size_bytes >= size_bytes
                && v.listed.thin_pool.as_deref() == thin_pool
            {
                Ok(())
            } else {
                Err(DriverError::AlreadyExists(format!(
                    "{group_name}/{name} exists with another size or pool"
                )))
            };
        }
        let listed = LogicalVolume {
            name: name.to_owned(),
            size_bytes,
            thin_pool: thin_pool.map(str::to_owned),
            origin: None,
        };
        add(g, listed, None)
    })
}

/// Snapshot `origin` as `name` (a thick origin needs `size_bytes` of change space).
pub fn snapshot(
    group_name: &str,
    origin: &str,
    name: &str,
    size_bytes: Option<u64>,
) -> Result<(), DriverError> {
    check_name(name)?;
    world::with(|w| {
        let g = group(w, group_name)?;
        let source = g
            .volumes
            .get(origin)
            .ok_or_else(|| no_volume(group_name, origin))?;
        if let Some(v) = g.volumes.get(name) {
            return if v.listed.origin.as_deref() == Some(origin) {
                Ok(())
            } else {
                Err(DriverError::AlreadyExists(format!(
                    "{group_name}/{name} exists and is not a snapshot of {origin}"
                )))
            };
        }
        let size = match (&source.listed.thin_pool, size_bytes) {
            (Some(_), _) => source.listed.size_bytes,
            (None, Some(s)) if s > 0 => s,
            (None, _) => {
                return Err(DriverError::InvalidArgument(
                    "a snapshot of a thick volume needs a size for its changes".into(),
                ))
            }
        };
        let listed = LogicalVolume {
            name: name.to_owned(),
            size_bytes: size,
            thin_pool: source.listed.thin_pool.clone(),
            origin: Some(origin.to_owned()),
        };
        let fs = source.fs;
        add(g, listed, fs)
    })
}

/// Grow a volume to at least `size_bytes`; returns its size.
pub fn extend(group_name: &str, name: &str, size_bytes: u64) -> Result<u64, DriverError> {
    world::with(|w| {
        let g = group(w, group_name)?;
        let free = g.free();
        let v = g
            .volumes
            .get_mut(name)
            .ok_or_else(|| no_volume(group_name, name))?;
        if size_bytes > v.listed.size_bytes {
            let more = size_bytes - v.listed.size_bytes;
            if v.listed.thin_pool.is_none() && more > free {
                return Err(DriverError::ResourceExhausted(format!(
                    "{more} more bytes asked, {free} free"
                )));
            }
            v.listed.size_bytes = size_bytes;
        }
        Ok(v.listed.size_bytes)
    })
}

/// Copy `source` into a new volume `name` of `size_bytes` (filesystem included).
pub fn copy(
    group_name: &str,
    source: &str,
    name: &str,
    size_bytes: u64,
) -> Result<(), DriverError> {
    check_name(name)?;
    world::with(|w| {
        let g = group(w, group_name)?;
        let from = g
            .volumes
            .get(source)
            .ok_or_else(|| no_volume(group_name, source))?;
        if g.volumes.contains_key(name) {
            return Ok(());
        }
        let listed = LogicalVolume {
            name: name.to_owned(),
            size_bytes: size_bytes.max(from.listed.size_bytes),
            thin_pool: from.listed.thin_pool.clone(),
            origin: None,
        };
        let fs = from.fs;
        add(g, listed, fs)
    })
}

/// Remove a volume; one that is not there is success.
pub fn remove(group_name: &str, name: &str) -> Result<(), DriverError> {
    world::with(|w| {
        let g = group(w, group_name)?;
        if g.volumes
            .values()
            .any(|v| v.listed.origin.as_deref() == Some(name))
        {
            return Err(DriverError::FailedPrecondition(format!(
                "{group_name}/{name} has snapshots"
            )));
        }
        g.volumes.remove(name);
        Ok(())
    })
}

/// The volumes of a group.
pub fn list_volumes(group_name: &str) -> Result<Vec<LogicalVolume>, DriverError> {
    world::with(|w| {
        Ok(group(w, group_name)?
            .volumes
            .values()
            .map(|v| v.listed.clone())
            .collect())
    })
}

/// Bytes free in a group.
pub fn free_bytes(group_name: &str) -> Result<u64, DriverError> {
    world::with(|w| Ok(group(w, group_name)?.free()))
}

/// A device handle on a volume.
pub fn open(group_name: &str, name: &str) -> Result<BlockDevice, DriverError> {
    size_of(group_name, name)?;
    Ok(BlockDevice::logical_volume(group_name, name))
}

/// The size of volume `group/name`.
pub(crate) fn size_of(group_name: &str, name: &str) -> Result<u64, DriverError> {
    world::with(|w| {
        group(w, group_name)?
            .volumes
            .get(name)
            .map(|v| v.listed.size_bytes)
            .ok_or_else(|| no_volume(group_name, name))
    })
}
