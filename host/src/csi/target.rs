//! The publish target path: made before a publish and removed after an
//! unpublish, as the spec asks of a plugin (kubelet makes only its parent).

use std::io::ErrorKind;
use std::path::Path;

use tonic::Status;

use crate::bindings::types::{AccessType, VolumeCapability};
use crate::sys::deferred_close::defer_close;
use crate::sys::mount::open_path;

/// An I/O failure on a node path, as the INTERNAL status the caller gets.
pub(super) fn io_status(what: &str, path: &Path, e: std::io::Error) -> Status {
    Status::internal(format!("{what} {}: {e}", path.display()))
}

/// Whether anything (a symlink included) is at `path`.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Makes the publish target as the capability needs it: a directory for
/// mount access, a file for block access. Returns whether it was created
/// (not when something is already there).
pub fn create_target(path: &Path, cap: &VolumeCapability) -> Result<bool, Status> {
    let make = |path: &Path| match cap.access_type {
        AccessType::Mount(_) => std::fs::create_dir(path),
        AccessType::Block => std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)
            .map(drop),
    };
    let made = match make(path) {
        // Kubelet makes the parent; make it if it did not.
        Err(e) if e.kind() == ErrorKind::NotFound => match path.parent() {
            Some(parent) => std::fs::create_dir_all(parent)
                .map_err(|e| io_status("creating", parent, e))
                .and_then(|_| make(path).map_err(|e| io_status("creating", path, e))),
            None => Err(io_status("creating", path, e)),
        },
        other => other.map_err(|e| io_status("creating", path, e)),
    };
    match made {
        Ok(()) => Ok(true),
        Err(_) if exists(path) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes a target path the host created, unless something is still
/// mounted there (the kernel refuses to remove a mount point: EBUSY).
///
/// The path is gone when this returns. Its inode is held open across the
/// removal and released by [`defer_close`], so freeing it (which on some
/// disks waits for a TRIM) does not delay the caller's answer.
pub fn remove_target(path: &Path) -> Result<(), Status> {
    let held = open_path(path).ok();
    let removed = match std::fs::remove_dir(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => std::fs::remove_file(path),
        other => other,
    };
    if let Some(held) = held {
        defer_close(held);
    }
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(Status::internal(format!(
            "{} is still mounted after the driver unpublished it",
            path.display()
        ))),
        Err(e) => Err(io_status("removing", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{AccessMode, MountAccess};

    fn cap(access_type: AccessType) -> VolumeCapability {
        VolumeCapability {
            access_type,
            access_mode: AccessMode::SingleNodeWriter,
        }
    }

    #[test]
    fn targets_are_made_by_access_type_and_gone_when_removal_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mount = cap(AccessType::Mount(MountAccess {
            fs_type: String::new(),
            mount_flags: Vec::new(),
            volume_mount_group: String::new(),
        }));
        for (name, cap, is_dir) in [("dir", mount, true), ("dev", cap(AccessType::Block), false)] {
            let path = dir.path().join("pod").join(name);
            assert!(
                create_target(&path, &cap).unwrap(),
                "{name}: made, parent too"
            );
            assert_eq!(path.is_dir(), is_dir, "{name}");
            assert!(
                !create_target(&path, &cap).unwrap(),
                "{name}: already there"
            );
            remove_target(&path).unwrap();
            assert!(!exists(&path), "{name}: the name is gone on return");
            remove_target(&path).expect("removing a missing target succeeds");
        }
    }
}
