//! `mount`: targets kubelet hands over, and a mount table per target that
//! stacks as the kernel's does (a second mount covers the first; unmount
//! takes the top one off; nothing mounted is a successful unmount).

use super::volumes::{FsStats, Root, Usage};
use super::world;
use crate::{DriverError, FsType, NfsShare, TmpfsOptions};

/// What a target is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRole {
    /// NodePublish's target path.
    Publish,
    /// NodeStage's staging path.
    Staging,
}

/// What a target is: a directory (a filesystem volume) or a file (raw block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetShape {
    /// A directory.
    Directory,
    /// A file.
    File,
}

/// One mount at a target, as the fake host recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// What is mounted.
    pub source: MountSource,
    /// Whether it is read-only.
    pub read_only: bool,
}

/// What a mount shows.
#[derive(Debug, Clone, PartialEq)]
pub enum MountSource {
    /// A path of the storage root, bound (`bind-from-root`).
    Root(String),
    /// What another target showed, bound (`bind-from-target`): its place
    /// and its top mount then (none: the empty directory under it).
    Target {
        /// The source target's place.
        place: String,
        /// What was mounted there.
        showing: Option<Box<MountSource>>,
    },
    /// A filesystem on a block device (`block-device.mount-onto`).
    Filesystem {
        /// The device node.
        device: String,
        /// The filesystem type.
        fs: FsType,
        /// The mount options.
        options: Vec<String>,
    },
    /// A block device node itself (`block-device.bind-node-onto`).
    DeviceNode(String),
    /// An NFS export (`netfs.mount-onto`).
    Nfs {
        /// The share.
        share: NfsShare,
        /// The directory of the export mounted.
        subdir: String,
    },
    /// A tmpfs (`tmpfs.mount-onto`).
    Tmpfs(TmpfsOptions),
}

/// A target handle: a place kubelet named, owned for one call.
#[derive(Debug)]
pub struct Target {
    place: String,
}

super::no_component_handles!(Target);

impl Target {
    /// The handle of `place` ([`super::FakeHost::target`]).
    pub(crate) fn at(place: &str) -> Self {
        Self {
            place: place.to_owned(),
        }
    }

    fn with_place<T>(&self, f: impl FnOnce(&mut world::Place) -> T) -> T {
        world::with(|w| {
            f(w.targets
                .get_mut(&self.place)
                .expect("a target the fake host handed over"))
        })
    }

    /// Adds a mount on top of what is mounted here.
    pub(crate) fn push(&self, source: MountSource, read_only: bool) {
        self.with_place(|p| p.mounts.push(Mount { source, read_only }));
    }

    /// What the target is for.
    pub fn role(&self) -> TargetRole {
        self.with_place(|p| p.role)
    }

    /// Directory or file.
    pub fn shape(&self) -> TargetShape {
        self.with_place(|p| p.shape)
    }

    /// Whether anything is mounted here.
    pub fn is_mounted(&self) -> Result<bool, DriverError> {
        Ok(self.with_place(|p| !p.mounts.is_empty()))
    }

    /// Bind `path` of the storage root here: a directory onto a directory
    /// target, a file onto a file target.
    pub fn bind_from_root(
        &self,
        source: &Root,
        path: &str,
        read_only: bool,
    ) -> Result<(), DriverError> {
        let on_disk = source.granted()?.join(super::beneath(path)?);
        let meta = std::fs::metadata(&on_disk).map_err(|e| super::io_error(path, e))?;
        let fits = match self.shape() {
            TargetShape::Directory => meta.is_dir(),
            TargetShape::File => meta.is_file(),
        };
        if !fits {
            return Err(DriverError::InvalidArgument(format!(
                "bind: {path} does not have the target's shape ({:?})",
                self.shape()
            )));
        }
        self.push(MountSource::Root(path.to_owned()), read_only);
        Ok(())
    }

    /// Bind what `source` shows now here.
    pub fn bind_from_target(&self, source: &Target, read_only: bool) -> Result<(), DriverError> {
        if source.place == self.place {
            return Err(DriverError::InvalidArgument(
                "cannot bind a target onto itself".into(),
            ));
        }
        let showing = source.with_place(|p| p.mounts.last().map(|m| Box::new(m.source.clone())));
        self.push(
            MountSource::Target {
                place: source.place.clone(),
                showing,
            },
            read_only,
        );
        Ok(())
    }

    /// Make the top mount here read-only.
    pub fn remount_read_only(&self) -> Result<(), DriverError> {
        self.with_place(|p| match p.mounts.last_mut() {
            Some(m) => {
                m.read_only = true;
                Ok(())
            }
            None => Err(DriverError::InvalidArgument(
                "remount: nothing is mounted at the target".into(),
            )),
        })
    }

    /// Take the top mount off; nothing mounted is success.
    pub fn unmount(&self) -> Result<(), DriverError> {
        self.with_place(|p| {
            p.mounts.pop();
        });
        Ok(())
    }

    /// Space of what is mounted here (a fake filesystem of 1 TiB).
    pub fn statvfs(&self) -> Result<FsStats, DriverError> {
        Ok(super::volumes::stats(Usage {
            bytes: 0,
            inodes: 0,
        }))
    }
}
