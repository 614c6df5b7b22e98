//! `volumes`: the storage root (a temporary directory) and NFS share roots.

use std::path::{Path, PathBuf};

use super::{beneath, io_error, world};
use crate::DriverError;

/// Capacity the fake storage root reports: 1 TiB, minus what is used.
const CAPACITY: u64 = 1 << 40;
/// Inodes the fake storage root reports.
const INODES: u64 = 1 << 24;

/// Kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// Anything else.
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: EntryKind,
}

/// Space and inodes of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsStats {
    /// Size in bytes.
    pub total_bytes: u64,
    /// Bytes free.
    pub free_bytes: u64,
    /// Bytes free to unprivileged users.
    pub available_bytes: u64,
    /// Inodes in all.
    pub total_inodes: u64,
    /// Inodes free.
    pub free_inodes: u64,
}

/// Bytes and inodes a tree uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Bytes allocated.
    pub bytes: u64,
    /// Inodes.
    pub inodes: u64,
}

/// A root handle: the storage root, or an NFS share opened as one.
#[derive(Debug)]
pub struct Root {
    share: Option<PathBuf>,
}

super::no_component_handles!(Root);

/// Opens the driver's storage root.
pub fn open_root() -> Result<Root, DriverError> {
    Ok(Root { share: None })
}

impl Root {
    /// An NFS share's root ([`super::netfs::open_share`]).
    pub(crate) fn share(dir: PathBuf) -> Self {
        Self { share: Some(dir) }
    }

    /// The storage root itself, for the capabilities that work only there.
    pub(crate) fn granted(&self) -> Result<PathBuf, DriverError> {
        match self.share {
            None => Ok(world::with(|w| w.root())),
            Some(_) => Err(DriverError::PermissionDenied(
                "an NFS share root cannot be used here, only the storage root".into(),
            )),
        }
    }

    fn dir(&self) -> PathBuf {
        match &self.share {
            Some(d) => d.clone(),
            None => world::with(|w| w.root()),
        }
    }

    /// `path` on disk, checked to stay beneath this root.
    pub(crate) fn resolve(&self, path: &str) -> Result<PathBuf, DriverError> {
        Ok(self.dir().join(beneath(path)?))
    }

    /// Like [`Self::resolve`], refusing the root itself.
    fn resolve_below(&self, path: &str, what: &str) -> Result<PathBuf, DriverError> {
        if beneath(path)?.as_os_str().is_empty() {
            return Err(DriverError::InvalidArgument(format!(
                "cannot {what} the storage root itself"
            )));
        }
        self.resolve(path)
    }

    /// Create a directory (and missing parents). Succeeds if it exists.
    pub fn create_dir(&self, path: &str) -> Result<(), DriverError> {
        std::fs::create_dir_all(self.resolve(path)?).map_err(|e| io_error(path, e))
    }

    /// Remove a file or a directory tree; nothing there is success.
    pub fn remove_tree(&self, path: &str) -> Result<(), DriverError> {
        let p = self.resolve_below(path, "remove")?;
        let gone = match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(path, e)),
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
        };
        gone_is_ok(gone).map_err(|e| io_error(path, e))
    }

    /// Remove a file; nothing there is success.
    pub fn remove_file(&self, path: &str) -> Result<(), DriverError> {
        let p = self.resolve_below(path, "remove")?;
        gone_is_ok(std::fs::remove_file(p)).map_err(|e| io_error(path, e))
    }

    /// The entries of a directory, sorted by name.
    pub fn list_dir(&self, path: &str) -> Result<Vec<Entry>, DriverError> {
        let p = self.resolve(path)?;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(p).map_err(|e| io_error(path, e))? {
            let entry = entry.map_err(|e| io_error(path, e))?;
            let ft = entry.file_type().map_err(|e| io_error(path, e))?;
            let kind = if ft.is_dir() {
                EntryKind::Directory
            } else if ft.is_file() {
                EntryKind::File
            } else if ft.is_symlink() {
                EntryKind::Symlink
            } else {
                EntryKind::Other
            };
            out.push(Entry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Rename within the root.
    pub fn rename(&self, source: &str, destination: &str) -> Result<(), DriverError> {
        let s = self.resolve_below(source, "rename")?;
        let d = self.resolve_below(destination, "replace")?;
        std::fs::rename(s, d).map_err(|e| io_error(source, e))
    }

    /// Copy a file or directory tree to a new name.
    pub fn copy(&self, source: &str, destination: &str) -> Result<(), DriverError> {
        let s = self.resolve_below(source, "copy")?;
        let d = self.resolve_below(destination, "replace")?;
        copy_tree(&s, &d).map_err(|e| io_error(source, e))
    }

    /// Whether anything is at `path` (a symlink is not followed).
    pub fn exists(&self, path: &str) -> Result<bool, DriverError> {
        match std::fs::symlink_metadata(self.resolve(path)?) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(path, e)),
        }
    }

    /// Write a whole file.
    pub fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), DriverError> {
        let p = self.resolve_below(path, "write")?;
        std::fs::write(p, contents).map_err(|e| io_error(path, e))
    }

    /// Read a whole file.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, DriverError> {
        std::fs::read(self.resolve(path)?).map_err(|e| io_error(path, e))
    }

    /// Space of the filesystem holding `path`: 1 TiB, less what the root uses.
    pub fn statvfs(&self, path: &str) -> Result<FsStats, DriverError> {
        let p = self.resolve(path)?;
        std::fs::symlink_metadata(&p).map_err(|e| io_error(path, e))?;
        let used = usage_of(&self.dir()).map_err(|e| io_error(path, e))?;
        Ok(stats(used))
    }

    /// Bytes and inodes the tree at `path` uses.
    pub fn usage(&self, path: &str) -> Result<Usage, DriverError> {
        usage_of(&self.resolve(path)?).map_err(|e| io_error(path, e))
    }
}

/// Stats of a fake filesystem of [`CAPACITY`] with `used` taken.
pub(crate) fn stats(used: Usage) -> FsStats {
    let free = CAPACITY.saturating_sub(used.bytes);
    FsStats {
        total_bytes: CAPACITY,
        free_bytes: free,
        available_bytes: free,
        total_inodes: INODES,
        free_inodes: INODES.saturating_sub(used.inodes),
    }
}

fn gone_is_ok(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn copy_tree(s: &Path, d: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(s)?;
    if std::fs::symlink_metadata(d).is_ok() {
        return Err(std::io::ErrorKind::AlreadyExists.into());
    }
    if meta.is_dir() {
        std::fs::create_dir(d)?;
        for entry in std::fs::read_dir(s)? {
            let entry = entry?;
            copy_tree(&entry.path(), &d.join(entry.file_name()))?;
        }
        std::fs::set_permissions(d, meta.permissions())
    } else if meta.is_file() {
        std::fs::copy(s, d).map(|_| ())
    } else {
        Err(std::io::ErrorKind::InvalidInput.into())
    }
}

fn usage_of(p: &Path) -> std::io::Result<Usage> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(p)?;
    let mut used = Usage {
        bytes: meta.blocks() * 512,
        inodes: 1,
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(p)? {
            let u = usage_of(&entry?.path())?;
            used.bytes += u.bytes;
            used.inodes += u.inodes;
        }
    }
    Ok(used)
}
