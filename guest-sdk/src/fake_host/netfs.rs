//! `netfs`: NFS exports as directories of the fake host
//! ([`super::FakeHost::share_dir`]), opened as roots and mounted onto targets.

use super::mount::{MountSource, Target, TargetShape};
use super::volumes::Root;
use super::world;
use crate::DriverError;

/// NFS protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NfsVersion {
    /// NFSv3.
    V3,
    /// NFSv4.0.
    V40,
    /// NFSv4.1.
    V41,
    /// NFSv4.2.
    V42,
}

/// An NFS export and how to mount it.
#[derive(Debug, Clone, PartialEq)]
pub struct NfsShare {
    /// The server (a name or an address).
    pub server: String,
    /// The exported path.
    pub export_path: String,
    /// The protocol version.
    pub version: NfsVersion,
    /// Mount options.
    pub options: Vec<String>,
}

/// Mount `subdir` of the share onto a directory target.
pub fn mount_onto(
    at: &Target,
    share: &NfsShare,
    subdir: &str,
    read_only: bool,
) -> Result<(), DriverError> {
    if at.shape() != TargetShape::Directory {
        return Err(DriverError::InvalidArgument(
            "an NFS share mounts onto a directory target".into(),
        ));
    }
    let dir = world::with(|w| w.share_dir(&share.server, &share.export_path));
    let sub = dir.join(super::beneath(subdir)?);
    if !sub.is_dir() {
        return Err(DriverError::NotFound(format!(
            "{subdir} is not a directory of {}:{}",
            share.server, share.export_path
        )));
    }
    at.push(
        MountSource::Nfs {
            share: share.clone(),
            subdir: subdir.to_owned(),
        },
        read_only,
    );
    Ok(())
}

/// The share's root directory, to make and remove volume directories in.
pub fn open_share(share: &NfsShare) -> Result<Root, DriverError> {
    Ok(Root::share(world::with(|w| {
        w.share_dir(&share.server, &share.export_path)
    })))
}
