//! `device`: backing files in the storage root, loop devices over them,
//! and filesystems on devices. A filesystem on a backing file is a marker
//! at its start, so a copy of the file holds the same filesystem; one on a
//! logical volume is kept with the volume.

use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use super::mount::{MountSource, Target, TargetShape};
use super::volumes::Root;
use super::{io_error, world};
use crate::DriverError;

/// Filesystems the host makes and mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    /// ext4.
    Ext4,
    /// XFS.
    Xfs,
}

/// Options of `make-filesystem`.
#[derive(Debug, Clone, PartialEq)]
pub struct MkfsOptions {
    /// A filesystem label.
    pub label: Option<String>,
}

/// What a filesystem check found.
#[derive(Debug, Clone, PartialEq)]
pub struct FsCheck {
    /// Whether the filesystem is clean.
    pub clean: bool,
    /// The checker's report.
    pub report: String,
}

/// Where a fake filesystem's marker starts a backing file.
const MARKER: &[u8] = b"wasmvol-fake-fs:";

/// What a device is over.
#[derive(Debug, Clone)]
enum Over {
    /// A loop device over a backing file.
    File(PathBuf),
    /// A logical volume.
    Lv { group: String, name: String },
}

/// A block device handle.
#[derive(Debug)]
pub struct BlockDevice {
    node: String,
    over: Over,
}

super::no_component_handles!(BlockDevice);

impl BlockDevice {
    /// The handle of logical volume `group/name` ([`super::lvm::open`]).
    pub(crate) fn logical_volume(group: &str, name: &str) -> Self {
        Self {
            node: format!("/dev/{group}/{name}"),
            over: Over::Lv {
                group: group.to_owned(),
                name: name.to_owned(),
            },
        }
    }

    fn check_attached(&self) -> Result<(), DriverError> {
        if let Over::File(_) = self.over {
            if !world::with(|w| w.loops.iter().any(|l| l.node == self.node)) {
                return Err(DriverError::FailedPrecondition(
                    "the device was detached".into(),
                ));
            }
        }
        Ok(())
    }

    fn filesystem(&self) -> Result<Option<FsType>, DriverError> {
        self.check_attached()?;
        match &self.over {
            Over::File(p) => {
                let mut head = [0u8; 32];
                let n = std::fs::File::open(p)
                    .and_then(|mut f| f.read(&mut head))
                    .map_err(|e| io_error("probe", e))?;
                let head = &head[..n];
                Ok(match head.strip_prefix(MARKER) {
                    Some(rest) if rest.starts_with(b"ext4") => Some(FsType::Ext4),
                    Some(rest) if rest.starts_with(b"xfs") => Some(FsType::Xfs),
                    _ => None,
                })
            }
            Over::Lv { group, name } => world::with(|w| {
                w.groups
                    .get(group)
                    .and_then(|g| g.volumes.get(name))
                    .map(|v| v.fs)
                    .ok_or_else(|| super::lvm::no_volume(group, name))
            }),
        }
    }

    /// The device node.
    pub fn node(&self) -> String {
        self.node.clone()
    }

    /// Size in bytes.
    pub fn size(&self) -> Result<u64, DriverError> {
        self.check_attached()?;
        match &self.over {
            Over::File(p) => std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| io_error("size", e)),
            Over::Lv { group, name } => super::lvm::size_of(group, name),
        }
    }

    /// Size in bytes after the backing file or volume grew.
    pub fn refresh_size(&self) -> Result<u64, DriverError> {
        self.size()
    }

    /// Detach a loop device (a logical volume is removed with `lvm.remove`).
    pub fn detach(&self) -> Result<(), DriverError> {
        match self.over {
            Over::File(_) => {
                self.check_attached()?;
                world::with(|w| w.loops.retain(|l| l.node != self.node));
                Ok(())
            }
            Over::Lv { .. } => Err(DriverError::InvalidArgument(
                "a logical volume is not detached: remove it with lvm.remove".into(),
            )),
        }
    }

    /// Make a filesystem; a device that holds one already is refused.
    pub fn make_filesystem(&self, fs: FsType, _options: &MkfsOptions) -> Result<(), DriverError> {
        if let Some(existing) = self.filesystem()? {
            return Err(DriverError::FailedPrecondition(format!(
                "{} already holds a {existing:?} filesystem; the host never reformats",
                self.node
            )));
        }
        match &self.over {
            Over::File(p) => {
                let name: &[u8] = match fs {
                    FsType::Ext4 => b"ext4",
                    FsType::Xfs => b"xfs",
                };
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .and_then(|mut f| {
                        f.rewind()?;
                        f.write_all(&[MARKER, name].concat())
                    })
                    .map_err(|e| io_error("mkfs", e))
            }
            Over::Lv { group, name } => world::with(|w| {
                if let Some(v) = w
                    .groups
                    .get_mut(group)
                    .and_then(|g| g.volumes.get_mut(name))
                {
                    v.fs = Some(fs);
                }
                Ok(())
            }),
        }
    }

    /// The filesystem on the device, if any.
    pub fn probe_filesystem(&self) -> Result<Option<FsType>, DriverError> {
        self.filesystem()
    }

    /// Check the filesystem (a fake one is always clean).
    pub fn check_filesystem(&self) -> Result<FsCheck, DriverError> {
        self.holding()?;
        Ok(FsCheck {
            clean: true,
            report: "clean".into(),
        })
    }

    /// Grow the filesystem to the device's size.
    pub fn grow_filesystem(&self, _mounted_at: Option<&Target>) -> Result<(), DriverError> {
        self.holding().map(|_| ())
    }

    fn holding(&self) -> Result<FsType, DriverError> {
        self.filesystem()?
            .ok_or_else(|| DriverError::FailedPrecondition("the device holds no filesystem".into()))
    }

    /// Mount the device's filesystem onto a directory target.
    pub fn mount_onto(
        &self,
        at: &Target,
        fs: FsType,
        options: &[String],
        read_only: bool,
    ) -> Result<(), DriverError> {
        if at.shape() != TargetShape::Directory {
            return Err(DriverError::InvalidArgument(
                "a filesystem mounts onto a directory target".into(),
            ));
        }
        let found = self.holding()?;
        if found != fs {
            return Err(DriverError::FailedPrecondition(format!(
                "{} holds {found:?}, not {fs:?}",
                self.node
            )));
        }
        at.push(
            MountSource::Filesystem {
                device: self.node.clone(),
                fs,
                options: options.to_vec(),
            },
            read_only,
        );
        Ok(())
    }

    /// Bind the device node onto a file target (raw block).
    pub fn bind_node_onto(&self, at: &Target) -> Result<(), DriverError> {
        self.check_attached()?;
        if at.shape() != TargetShape::File {
            return Err(DriverError::InvalidArgument(
                "a device node binds onto a file target".into(),
            ));
        }
        at.push(MountSource::DeviceNode(self.node.clone()), false);
        Ok(())
    }
}

/// Create a sparse backing file of `size` bytes; an existing file is refused.
pub fn create_backing_file(root: &Root, path: &str, size: u64) -> Result<(), DriverError> {
    root.granted()?;
    let p = root.resolve(path)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .and_then(|f| f.set_len(size))
        .map_err(|e| io_error(path, e))
}

/// Grow a backing file to `size` bytes (never shrinks it).
pub fn grow_backing_file(root: &Root, path: &str, size: u64) -> Result<(), DriverError> {
    let (p, _) = backing(root, path)?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(|e| io_error(path, e))?;
    if size > f.metadata().map_err(|e| io_error(path, e))?.len() {
        f.set_len(size).map_err(|e| io_error(path, e))?;
    }
    Ok(())
}

/// A backing file beneath the storage root: its path and identity.
fn backing(root: &Root, path: &str) -> Result<(PathBuf, (u64, u64)), DriverError> {
    use std::os::unix::fs::MetadataExt;
    root.granted()?;
    let p = root.resolve(path)?;
    let meta = std::fs::metadata(&p).map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(DriverError::InvalidArgument(format!(
            "{path} is not a regular file"
        )));
    }
    Ok((p, (meta.dev(), meta.ino())))
}

/// Attach a loop device over a backing file; one attached already is found.
pub fn attach(root: &Root, path: &str) -> Result<BlockDevice, DriverError> {
    let (p, id) = backing(root, path)?;
    let node = world::with(|w| {
        if let Some(l) = w.loops.iter().find(|l| l.backing == id) {
            return l.node.clone();
        }
        let node = format!("/dev/loop{}", w.next_loop);
        w.next_loop += 1;
        w.loops.push(world::Loop {
            node: node.clone(),
            backing: id,
            path: p.clone(),
        });
        node
    });
    Ok(BlockDevice {
        node,
        over: Over::File(p),
    })
}

/// The loop device attached over a backing file, if any.
pub fn find_attached(root: &Root, path: &str) -> Result<Option<BlockDevice>, DriverError> {
    match backing(root, path) {
        Err(DriverError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
        Ok((_, id)) => Ok(world::with(|w| {
            w.loops
                .iter()
                .find(|l| l.backing == id)
                .map(|l| BlockDevice {
                    node: l.node.clone(),
                    over: Over::File(l.path.clone()),
                })
        })),
    }
}
