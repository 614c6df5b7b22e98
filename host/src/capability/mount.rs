//! `wasmvol:driver/mount`: mounts onto the mount points of one request.
//!
//! A [`TargetHandle`] is made by the host from a path kubelet passed in the
//! request and lives in the call's resource table, so a driver can mount only
//! onto what this request handed it. Sources are opened beneath the storage
//! root (or are another handle of the same request) and mounted by file
//! descriptor.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde_json::json;
use wasmtime::component::Resource;

use crate::bindings::mount::{Host, HostTarget, TargetRole, TargetShape};
use crate::bindings::volumes::{FsStats, Root};
use crate::bindings::DriverError;
use crate::capability::context::{io_error, CallContext, CapError};
use crate::capability::table::CapOp;
use crate::capability::volumes::BeneathRoot;
use crate::sys::mount as sys;

/// A mount point kubelet handed over for one request.
#[derive(Debug)]
pub struct TargetHandle {
    role: TargetRole,
    shape: TargetShape,
    path: PathBuf,
    /// `O_PATH` handle opened when the request arrived; mounts attach to it.
    /// Released for an unmount, which it would keep busy; reopened on next use.
    fd: Option<OwnedFd>,
}

impl TargetHandle {
    /// Opens a request path as a target: a directory (mount access) or a
    /// regular file (block access), never a symlink. The handle is opened
    /// when the request arrives, before the driver runs, so nothing the
    /// driver does can change what its mounts land on.
    pub fn open(path: &Path, role: TargetRole) -> std::io::Result<Self> {
        let (fd, shape) = open_shaped(path)?;
        Ok(Self {
            role,
            shape,
            path: path.to_owned(),
            fd: Some(fd),
        })
    }

    /// The host path (never shown to the driver).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Directory (mount access) or file (block access).
    pub fn shape(&self) -> TargetShape {
        self.shape
    }

    /// The `O_PATH` handle mounts attach to. After an unmount released it,
    /// the path is opened again on the next use, and must still be what it was.
    pub fn fd(&mut self) -> std::io::Result<BorrowedFd<'_>> {
        if self.fd.is_none() {
            let (fd, shape) = open_shaped(&self.path)?;
            if shape != self.shape {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{} changed type during the call", self.path.display()),
                ));
            }
            self.fd = Some(fd);
        }
        Ok(self.fd.as_ref().expect("opened above").as_fd())
    }
}

/// Opens `path` without following a final symlink, as a directory or a
/// regular file (or a block device bound onto a file target).
fn open_shaped(path: &Path) -> std::io::Result<(OwnedFd, TargetShape)> {
    // Targets are mostly directories: one open tells that much.
    match sys::open_dir_path(path) {
        Ok(fd) => return Ok((fd, TargetShape::Directory)),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
        Err(e) => return Err(e),
    }
    let fd = sys::open_path(path)?;
    let shape = match nix::sys::stat::fstat(&fd)?.st_mode & libc::S_IFMT {
        libc::S_IFDIR => TargetShape::Directory,
        libc::S_IFREG | libc::S_IFBLK => TargetShape::File,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} is neither a directory nor a regular file",
                    path.display()
                ),
            ))
        }
    };
    Ok((fd, shape))
}

pub(crate) fn table_err(e: wasmtime::component::ResourceTableError) -> CapError {
    CapError::Denied(format!("invalid handle: {e}"))
}

impl CallContext {
    /// The target as audit records name it.
    pub(crate) fn target_args(&self, target: &Resource<TargetHandle>) -> serde_json::Value {
        match self.table.get(target) {
            Ok(t) => json!({"target": t.path, "role": t.role}),
            Err(_) => json!({"target": null}),
        }
    }

    /// The flags a mount made for this driver carries: its policy's
    /// hardening, and read-only if asked.
    pub fn mount_flags(&self, read_only: bool) -> sys::MountFlags {
        let h = self.env.policy.grants.mount_hardening;
        sys::MountFlags {
            read_only,
            nosuid: h.nosuid,
            nodev: h.nodev,
            noexec: h.noexec,
        }
    }

    /// Attaches a new, detached mount (a filesystem the host just made, see
    /// [`sys::fs_context`](crate::sys::fs_context)) onto a directory target.
    pub(crate) fn attach_onto_dir(
        &mut self,
        t: &Resource<TargetHandle>,
        mount: &OwnedFd,
    ) -> Result<(), CapError> {
        let target = self.table.get_mut(t).map_err(table_err)?;
        if target.shape != TargetShape::Directory {
            return Err(CapError::Failed(DriverError::InvalidArgument(
                "a filesystem mounts onto a directory target, not a file".into(),
            )));
        }
        let fd = target.fd().map_err(|e| io_error("target", e))?;
        sys::attach(mount.as_fd(), fd).map_err(|e| io_error("attach", e))
    }

    /// The hardening flags as the audit record lists them.
    pub fn hardening_names(&self) -> serde_json::Value {
        json!(self.env.policy.grants.mount_hardening.names())
    }
}

impl HostTarget for CallContext {
    fn role(&mut self, t: Resource<TargetHandle>) -> wasmtime::Result<TargetRole> {
        Ok(self.table.get(&t)?.role)
    }

    fn shape(&mut self, t: Resource<TargetHandle>) -> wasmtime::Result<TargetShape> {
        Ok(self.table.get(&t)?.shape)
    }

    fn is_mounted(
        &mut self,
        t: Resource<TargetHandle>,
    ) -> wasmtime::Result<Result<bool, DriverError>> {
        self.table.get(&t)?;
        let args = self.target_args(&t);
        Ok(self.gate(CapOp::MountIsMounted, &[], args, |ctx| {
            let path = &ctx.table.get(&t).map_err(table_err)?.path;
            sys::is_mount_point(path).map_err(|e| io_error("is-mounted", e))
        }))
    }

    fn bind_from_root(
        &mut self,
        t: Resource<TargetHandle>,
        root: Resource<Root>,
        path: String,
        read_only: bool,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        self.table.get(&t)?;
        let mut args = self.target_args(&t);
        args["source"] = json!(path);
        args["read_only"] = json!(read_only);
        args["flags"] = self.hardening_names();
        Ok(self.gate(CapOp::MountBindFromRoot, &[], args, |ctx| {
            let flags = ctx.mount_flags(read_only);
            let p = BeneathRoot::parse(&path)?;
            let shape = ctx.table.get(&t).map_err(table_err)?.shape;
            let root = ctx.granted_root(&root)?;
            // Resolved beneath the root now; the fd is what gets mounted.
            let source: OwnedFd = match shape {
                TargetShape::Directory => {
                    root.open_dir(p.as_path()).map(|d| d.into_std_file().into())
                }
                TargetShape::File => root.open(p.as_path()).map(|f| f.into_std().into()),
            }
            .map_err(|e| io_error(&path, e))?;
            let target = ctx.table.get_mut(&t).map_err(table_err)?;
            let target_fd = target.fd().map_err(|e| io_error("target", e))?;
            sys::bind(source.as_fd(), target_fd, flags).map_err(|e| io_error("bind", e))
        }))
    }

    fn bind_from_target(
        &mut self,
        t: Resource<TargetHandle>,
        source: Resource<TargetHandle>,
        read_only: bool,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        self.table.get(&t)?;
        self.table.get(&source)?;
        let mut args = self.target_args(&t);
        args["source"] = json!(self.table.get(&source)?.path);
        args["read_only"] = json!(read_only);
        args["flags"] = self.hardening_names();
        Ok(self.gate(CapOp::MountBindFromTarget, &[], args, |ctx| {
            let flags = ctx.mount_flags(read_only);
            let src_path = ctx.table.get(&source).map_err(table_err)?.path.clone();
            // Reopen the source so the bind takes what is mounted there now.
            let src_fd = sys::open_path(&src_path).map_err(|e| io_error("source", e))?;
            let dst = ctx.table.get_mut(&t).map_err(table_err)?;
            if src_path == dst.path {
                return Err(CapError::Failed(DriverError::InvalidArgument(
                    "cannot bind a target onto itself".into(),
                )));
            }
            let dst_fd = dst.fd().map_err(|e| io_error("target", e))?;
            sys::bind(src_fd.as_fd(), dst_fd, flags).map_err(|e| io_error("bind", e))
        }))
    }

    fn remount_read_only(
        &mut self,
        t: Resource<TargetHandle>,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        self.table.get(&t)?;
        let args = self.target_args(&t);
        Ok(self.gate(CapOp::MountRemountReadOnly, &[], args, |ctx| {
            let target = ctx.table.get(&t).map_err(table_err)?;
            sys::remount_read_only(&target.path).map_err(|e| io_error("remount", e))
        }))
    }

    fn unmount(&mut self, t: Resource<TargetHandle>) -> wasmtime::Result<Result<(), DriverError>> {
        self.table.get(&t)?;
        let args = self.target_args(&t);
        Ok(self.gate(CapOp::MountUnmount, &[], args, |ctx| {
            let target = ctx.table.get_mut(&t).map_err(table_err)?;
            // Our own handle into the mount would keep it busy: let go (it is
            // reopened if the call mounts here again), then unmount. Nothing
            // mounted there is success (umount's EINVAL), without a check first.
            target.fd = None;
            sys::unmount(&target.path)
                .map(|_| ())
                .map_err(|e| io_error("unmount", e))
        }))
    }

    fn statvfs(
        &mut self,
        t: Resource<TargetHandle>,
    ) -> wasmtime::Result<Result<FsStats, DriverError>> {
        self.table.get(&t)?;
        let args = self.target_args(&t);
        Ok(self.gate(CapOp::MountStatvfs, &[], args, |ctx| {
            let path = &ctx.table.get(&t).map_err(table_err)?.path;
            let s = nix::sys::statvfs::statvfs(path)
                .map_err(|e| io_error("statvfs", std::io::Error::from(e)))?;
            Ok(crate::sys::tree::FsStats::from(&s).into())
        }))
    }

    fn drop(&mut self, rep: Resource<TargetHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl Host for CallContext {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn targets_open_as_directories_or_files_and_never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let (dir, file) = (d.path().join("dir"), d.path().join("file"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(&file, b"").unwrap();
        symlink(&dir, d.path().join("to-dir")).unwrap();
        symlink(&file, d.path().join("to-file")).unwrap();
        nix::unistd::mkfifo(&d.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();

        assert_eq!(open_shaped(&dir).unwrap().1, TargetShape::Directory);
        assert_eq!(open_shaped(&file).unwrap().1, TargetShape::File);
        for odd in ["to-dir", "to-file", "fifo"] {
            let e = open_shaped(&d.path().join(odd)).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{odd}: {e}");
        }
        let missing = open_shaped(&d.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }
}

#[cfg(test)]
mod capability_tests {
    use super::*;
    use crate::capability::context::testing::TestCall;
    use crate::policy::{Grants, StorageAccess};

    /// Privileged, like the end-to-end suite: this thread gets a private
    /// mount namespace of its own, so nothing it mounts outlives it.
    fn private_mount_namespace() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "privileged test: run as root (scripts/test.sh); it must not be skipped"
        );
        sys::enter_private_mount_namespace().expect("a private mount namespace");
    }

    fn options_at(path: &Path) -> Option<String> {
        let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        info.lines()
            .rev()
            .find(|l| l.split(' ').nth(4) == path.to_str())
            .map(|l| l.split(' ').nth(5).unwrap().to_owned())
    }

    fn bind(t: &mut TestCall, target: &Path) -> Result<(), DriverError> {
        let handle = TargetHandle::open(target, TargetRole::Publish).unwrap();
        let target = t.ctx.table.push(handle).unwrap();
        let root = t
            .ctx
            .table
            .push(crate::capability::volumes::StorageRoot::Granted)
            .unwrap();
        HostTarget::bind_from_root(&mut t.ctx, target, root, "vol".into(), false).unwrap()
    }

    #[test]
    fn binds_need_the_mount_grant_and_carry_the_hardening_flags() {
        private_mount_namespace();
        let mut denied = TestCall::new(Some(StorageAccess::ReadWrite), Grants::default());
        std::fs::create_dir(denied.dir.path().join("root/vol")).unwrap();
        let target = denied.dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        assert!(matches!(
            bind(&mut denied, &target),
            Err(DriverError::PermissionDenied(_))
        ));
        assert_eq!(options_at(&target), None, "mounted without the grant");
        assert_eq!(denied.audit()[0]["decision"], "deny");

        let mut t = TestCall::new(
            Some(StorageAccess::ReadWrite),
            Grants {
                mount: true,
                ..Grants::default()
            },
        );
        std::fs::create_dir(t.dir.path().join("root/vol")).unwrap();
        let target = t.dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        bind(&mut t, &target).unwrap();
        let options = options_at(&target).expect("mounted");
        assert!(
            options.split(',').any(|o| o == "nosuid") && options.split(',').any(|o| o == "nodev"),
            "{options}"
        );
        nix::mount::umount(&target).unwrap();
        let records = t.audit();
        assert_eq!(
            records[0]["args"]["flags"],
            serde_json::json!(["nosuid", "nodev"])
        );
    }
}
