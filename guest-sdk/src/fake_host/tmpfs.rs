//! `tmpfs`: memory filesystems mounted onto targets.

use super::mount::{MountSource, Target, TargetShape};
use crate::DriverError;

/// Size and ownership of a tmpfs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TmpfsOptions {
    /// Size limit in bytes.
    pub size_bytes: u64,
    /// Mode of its root directory.
    pub mode: u32,
    /// Owner of its root directory.
    pub uid: u32,
    /// Group of its root directory.
    pub gid: u32,
}

/// Mount a tmpfs onto a directory target.
pub fn mount_onto(at: &Target, options: TmpfsOptions) -> Result<(), DriverError> {
    if at.shape() != TargetShape::Directory {
        return Err(DriverError::InvalidArgument(
            "a tmpfs mounts onto a directory target".into(),
        ));
    }
    if options.size_bytes == 0 {
        return Err(DriverError::InvalidArgument(
            "a tmpfs needs a size above 0".into(),
        ));
    }
    at.push(MountSource::Tmpfs(options), false);
    Ok(())
}
