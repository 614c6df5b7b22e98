//! `wasmvol:driver/volumes`: the driver's storage root.
//!
//! Paths from the driver are parsed into [`BeneathRoot`] (relative, no `..`)
//! and then resolved by cap-std beneath the root directory opened at load, so
//! a symlink met on the way cannot lead outside it either.

use std::path::{Component, Path, PathBuf};

use serde_json::json;
use wasmtime::component::Resource;

use crate::bindings::volumes::{Entry, EntryKind, FsStats, Host, HostRoot, Usage};
use crate::bindings::DriverError;
use crate::capability::context::{io_error, CallContext, CapError};
use crate::capability::table::CapOp;
use crate::sys::tree;

/// Largest file `read-file` returns (guards the guest's memory and ours).
const MAX_READ_BYTES: u64 = 16 << 20;

/// A root handle: the directory paths of `volumes` resolve beneath.
pub enum StorageRoot {
    /// The storage root policy granted the driver (held by the host, opened at load).
    Granted,
    /// An NFS share mounted detached for this call (`netfs.open-share`).
    Share(ShareRoot),
}

/// An NFS share opened as a root: the root directory of a detached mount,
/// reachable by no host path, unmounted when the handle is dropped.
pub struct ShareRoot {
    /// The share's root directory.
    pub dir: cap_std::fs::Dir,
    /// `address:/export` as audit records name it.
    pub describe: String,
}

/// A driver path checked to stay beneath the root by its shape; cap-std
/// then resolves it beneath the root, symlinks included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeneathRoot(PathBuf);

impl BeneathRoot {
    /// Accepts relative paths without `..`; "" and "." mean the root itself.
    pub fn parse(path: &str) -> Result<Self, CapError> {
        if path.contains('\0') {
            return Err(CapError::Failed(DriverError::InvalidArgument(
                "path contains NUL".into(),
            )));
        }
        let p = Path::new(path);
        for c in p.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(CapError::Denied(format!(
                        "path `{path}` leaves the storage root"
                    )));
                }
            }
        }
        Ok(Self(
            p.components()
                .filter(|c| !matches!(c, Component::CurDir))
                .collect(),
        ))
    }

    /// The path relative to the root ("" for the root itself).
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    fn is_root(&self) -> bool {
        self.0.as_os_str().is_empty()
    }
}

impl From<tree::FsStats> for FsStats {
    fn from(s: tree::FsStats) -> Self {
        FsStats {
            total_bytes: s.total_bytes,
            free_bytes: s.free_bytes,
            available_bytes: s.available_bytes,
            total_inodes: s.total_inodes,
            free_inodes: s.free_inodes,
        }
    }
}

impl CallContext {
    /// Runs a `volumes` operation on `root` through the gate: on the
    /// storage root with the operation's own needs, on an NFS share with
    /// the share's ([`Need::on_share`](crate::capability::table::Need::on_share)).
    /// A forged or stale handle traps the call.
    fn with_root<T>(
        &mut self,
        op: CapOp,
        root: &Resource<StorageRoot>,
        mut args: serde_json::Value,
        f: impl FnOnce(&cap_std::fs::Dir) -> Result<T, CapError>,
    ) -> wasmtime::Result<Result<T, DriverError>> {
        let share = match self.table.get(root)? {
            StorageRoot::Granted => None,
            StorageRoot::Share(s) => Some(s.describe.clone()),
        };
        let run = |ctx: &mut Self| {
            let dir = match ctx.table.get(root) {
                Ok(StorageRoot::Share(s)) => &s.dir,
                _ => ctx.env.root.as_ref().ok_or_else(|| {
                    CapError::Denied("no storage root is open for this driver".into())
                })?,
            };
            f(dir)
        };
        Ok(match share {
            None => self.gate(op, &[], args, run),
            Some(describe) => {
                args["share"] = json!(describe);
                let needs = op.needs().iter().map(|n| n.on_share());
                self.gate_with(op, needs, args, run)
            }
        })
    }

    /// The granted storage root behind `root`, for the capabilities that
    /// work only there (backing files, binds): a share root is refused.
    pub(crate) fn granted_root(
        &self,
        root: &Resource<StorageRoot>,
    ) -> Result<&cap_std::fs::Dir, CapError> {
        match self.table.get(root) {
            Ok(StorageRoot::Granted) => self
                .env
                .root
                .as_ref()
                .ok_or_else(|| CapError::Denied("no storage root is granted".into())),
            Ok(StorageRoot::Share(_)) => Err(CapError::Denied(
                "an NFS share root cannot be used here, only the storage root".into(),
            )),
            Err(e) => Err(CapError::Denied(format!("invalid root handle: {e}"))),
        }
    }
}

fn not_root(p: &BeneathRoot, what: &str) -> Result<(), CapError> {
    if p.is_root() {
        return Err(CapError::Failed(DriverError::InvalidArgument(format!(
            "cannot {what} the storage root itself"
        ))));
    }
    Ok(())
}

impl HostRoot for CallContext {
    fn create_dir(
        &mut self,
        handle: Resource<StorageRoot>,
        path: String,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        self.with_root(
            CapOp::VolumesCreateDir,
            &handle,
            json!({"path": path}),
            |root| {
                let p = BeneathRoot::parse(&path)?;
                root.create_dir_all(p.as_path())
                    .map_err(|e| io_error(&path, e))
            },
        )
    }

    fn remove_tree(
        &mut self,
        handle: Resource<StorageRoot>,
        path: String,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        self.with_root(
            CapOp::VolumesRemoveTree,
            &handle,
            json!({"path": path}),
            |root| {
                let p = BeneathRoot::parse(&path)?;
                not_root(&p, "remove")?;
                tree::remove_tree(root, p.as_path()).map_err(|e| io_error(&path, e))
            },
        )
    }

    fn remove_file(
        &mut self,
        handle: Resource<StorageRoot>,
        path: String,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        self.with_root(
            CapOp::VolumesRemoveFile,
            &handle,
            json!({"path": path}),
            |root| {
                let p = BeneathRoot::parse(&path)?;
                not_root(&p, "remove")?;
                match root.remove_file(p.as_path()) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    r => r.map_err(|e| io_error(&path, e)),
                }
            },
        )
    }

    fn list_dir(
        &mut self,
        handle: Resource<StorageRoot>,
        path: String,
    ) -> wasmtime::Result<Result<Vec<Entry>, DriverError>> {
        self.with_root(
            CapOp::VolumesListDir,
            &handle,
            json!({"path": path}),
            |root| {
                let p = BeneathRoot::parse(&path)?;
                let dir = if p.is_root() {
                    root.try_clone()
                } else {
                    root.open_dir(p.as_path())
                }
                .map_err(|e| io_error(&path, e))?;
                let mut out = Vec::new();
                for entry in dir.entries().map_err(|e| io_error(&path, e))? {
                    let entry = entry.map_err(|e| io_error(&path, e))?;
                    let ft = entry.file_type().map_err(|e| io_error(&path, e))?;
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
            },
        )
    }

    fn rename(
        &mut self,
        handle: Resource<StorageRoot>,
        source: String,
        destination: String,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let args = json!({"source": source, "destination": destination});
        self.with_root(CapOp::VolumesRename, &handle, args, |root| {
            let (s, d) = (
                BeneathRoot::parse(&source)?,
                BeneathRoot::parse(&destination)?,
            );
            not_root(&s, "rename")?;
            not_root(&d, "replace")?;
            root.rename(s.as_path(), root, d.as_path())
                .map_err(|e| io_error(&source, e))
        })
    }

    fn copy(
        &mut self,
        handle: Resource<StorageRoot>,
        source: String,
        destination: String,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let args = json!({"source": source, "destination": destination});
        self.with_root(CapOp::VolumesCopy, &handle, args, |root| {
            let (s, d) = (
                BeneathRoot::parse(&source)?,
                BeneathRoot::parse(&destination)?,
            );
            not_root(&s, "copy")?;
            not_root(&d, "replace")?;
            tree::copy_tree(root, s.as_path(), d.as_path()).map_err(|e| io_error(&source, e))
        })
    }

    fn exists(
        &mut self,
        handle: Resource<StorageRoot>,
        path: String,
    ) -> wasmtime::Result<Result<bool, DriverError>> {
        self.with_root(
            CapOp::VolumesExists,
            &handle,
            json!({"path": path}),
            |root| {
                let p = BeneathRoot::parse(&path)?;
                match root.symlink_metadata(p.as_path()) {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(io_error(&path, e)),
                }
            },
        )
    }

    fn write_file(
        &mut self,
        handle: Resource<StorageRoot>,
        path: String,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let args = json!({"path": path, "bytes": contents.len()});
        self.with_root(CapOp::VolumesWriteFile, &handle, args, |root| {
            let p = BeneathRoot::parse(&path)?;
            not_root(&p, "write")?;
            root.write(p.as_path(), &contents)
                .map_err(|e| io_error(&path, e))
        })
    }

    fn read_file(
        &mut self,
        handle: Resource<StorageRoot>,
        path: String,
    ) -> wasmtime::Result<Result<Vec<u8>, DriverError>> {
        self.with_root(
            CapOp::VolumesReadFile,
            &handle,
            json!({"path": path}),
            |root| {
                use std::io::Read;
                let p = BeneathRoot::parse(&path)?;
                let file = root.open(p.as_path()).map_err(|e| io_error(&path, e))?;
                let mut buf = Vec::new();
                file.take(MAX_READ_BYTES + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| io_error(&path, e))?;
                if buf.len() as u64 > MAX_READ_BYTES {
                    return Err(CapError::Failed(DriverError::OutOfRange(format!(
                        "{path} is larger than {MAX_READ_BYTES} bytes"
                    ))));
                }
                Ok(buf)
            },
        )
    }

    fn statvfs(
        &mut self,
        handle: Resource<StorageRoot>,
        path: String,
    ) -> wasmtime::Result<Result<FsStats, DriverError>> {
        self.with_root(
            CapOp::VolumesStatvfs,
            &handle,
            json!({"path": path}),
            |root| {
                let p = BeneathRoot::parse(&path)?;
                let s = tree::statvfs(root, p.as_path()).map_err(|e| io_error(&path, e))?;
                Ok(s.into())
            },
        )
    }

    fn usage(
        &mut self,
        handle: Resource<StorageRoot>,
        path: String,
    ) -> wasmtime::Result<Result<Usage, DriverError>> {
        self.with_root(
            CapOp::VolumesUsage,
            &handle,
            json!({"path": path}),
            |root| {
                let p = BeneathRoot::parse(&path)?;
                let (bytes, inodes) =
                    tree::usage(root, p.as_path()).map_err(|e| io_error(&path, e))?;
                Ok(Usage { bytes, inodes })
            },
        )
    }

    fn drop(&mut self, rep: Resource<StorageRoot>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl Host for CallContext {
    fn open_root(&mut self) -> wasmtime::Result<Result<Resource<StorageRoot>, DriverError>> {
        let opened = self.gate(CapOp::VolumesOpenRoot, &[], json!({}), |ctx| {
            ctx.table
                .push(StorageRoot::Granted)
                .map_err(|e| CapError::Failed(DriverError::ResourceExhausted(e.to_string())))
        });
        Ok(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_root_are_denied_by_shape() {
        for bad in ["/etc", "..", "a/../../b", "a/.."] {
            assert!(
                matches!(BeneathRoot::parse(bad), Err(CapError::Denied(_))),
                "{bad}"
            );
        }
        assert_eq!(
            BeneathRoot::parse("./a/b").unwrap().as_path(),
            Path::new("a/b")
        );
        assert!(BeneathRoot::parse("").unwrap().is_root());
        assert!(matches!(
            BeneathRoot::parse("a\0b"),
            Err(CapError::Failed(_))
        ));
    }
}

#[cfg(test)]
mod capability_tests {
    use super::*;
    use crate::capability::context::testing::TestCall;
    use crate::policy::{Grants, StorageAccess};

    fn root_of(t: &mut TestCall) -> Resource<StorageRoot> {
        crate::bindings::volumes::Host::open_root(&mut t.ctx)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn writes_land_beneath_the_root_and_escapes_are_denied_audited_and_do_nothing() {
        let mut t = TestCall::new(Some(StorageAccess::ReadWrite), Grants::default());
        let outside = t.dir.path().join("outside");
        std::os::unix::fs::symlink(&outside, t.dir.path().join("root/link")).unwrap();
        let r = root_of(&mut t);
        HostRoot::create_dir(&mut t.ctx, Resource::new_borrow(r.rep()), "a/b".into())
            .unwrap()
            .unwrap();
        assert!(t.dir.path().join("root/a/b").is_dir());
        for escape in ["../outside/x", "/etc/x", "link/x"] {
            let e = HostRoot::write_file(
                &mut t.ctx,
                Resource::new_borrow(r.rep()),
                escape.into(),
                b"pwned".to_vec(),
            )
            .unwrap()
            .unwrap_err();
            assert!(
                matches!(e, DriverError::PermissionDenied(_)),
                "{escape}: {e:?}"
            );
        }
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "written outside"
        );
        let records = t.audit();
        let denials = records
            .iter()
            .filter(|r| r["operation"] == "volumes.write-file" && r["decision"] == "deny")
            .count();
        assert_eq!(denials, 3, "{records:#?}");
    }

    #[test]
    fn a_read_only_root_refuses_every_write_before_touching_it() {
        let mut t = TestCall::new(Some(StorageAccess::ReadOnly), Grants::default());
        let r = root_of(&mut t);
        std::fs::create_dir(t.dir.path().join("root/keep")).unwrap();
        let b = || Resource::new_borrow(r.rep());
        let results = [
            HostRoot::create_dir(&mut t.ctx, b(), "new".into()).unwrap(),
            HostRoot::remove_tree(&mut t.ctx, b(), "keep".into()).unwrap(),
            HostRoot::rename(&mut t.ctx, b(), "keep".into(), "moved".into()).unwrap(),
        ];
        for r in results {
            assert!(matches!(r, Err(DriverError::PermissionDenied(_))), "{r:?}");
        }
        assert!(t.dir.path().join("root/keep").is_dir());
        assert!(!t.dir.path().join("root/new").exists());
        assert!(t.audit().iter().filter(|r| r["decision"] == "deny").count() >= 3);
    }
}
