//! `wasmvol:driver/tmpfs`: a new, size-limited tmpfs onto a request's
//! target (scratch and CSI ephemeral inline volumes, with no storage root).
//!
//! The host makes the filesystem with the filesystem-context API, setting
//! `size`, `mode`, `uid` and `gid` as typed numbers, with the policy's
//! hardening flags on the mount, and attaches it onto the target handle.

use serde_json::json;
use wasmtime::component::Resource;

use crate::bindings::tmpfs::{Host, TmpfsOptions};
use crate::bindings::DriverError;
use crate::capability::context::{io_error, CallContext, CapError};
use crate::capability::mount::TargetHandle;
use crate::capability::table::{CapOp, Need};
use crate::sys::fs_context::{AtimeFlags, FsContext};

impl Host for CallContext {
    fn mount_onto(
        &mut self,
        at: Resource<TargetHandle>,
        options: TmpfsOptions,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        self.table.get(&at)?;
        let mut args = self.target_args(&at);
        args["size_bytes"] = json!(options.size_bytes);
        args["mode"] = json!(format!("{:o}", options.mode));
        args["uid"] = json!(options.uid);
        args["gid"] = json!(options.gid);
        args["flags"] = self.hardening_names();
        let size = options.size_bytes;
        Ok(self.gate(
            CapOp::TmpfsMountOnto,
            &[Need::TmpfsBytes(size)],
            args,
            |ctx| {
                if size == 0 {
                    // tmpfs reads size=0 as "no limit".
                    return Err(CapError::Failed(DriverError::InvalidArgument(
                        "a tmpfs needs a size above 0".into(),
                    )));
                }
                if options.mode > 0o7777 {
                    return Err(CapError::Failed(DriverError::InvalidArgument(format!(
                        "mode {:o} is not a permission mode",
                        options.mode
                    ))));
                }
                let fs = FsContext::open("tmpfs").map_err(|e| io_error("tmpfs", e))?;
                for (key, value) in [
                    ("size", size.to_string()),
                    ("mode", format!("{:o}", options.mode)),
                    ("uid", options.uid.to_string()),
                    ("gid", options.gid.to_string()),
                ] {
                    fs.set_string(key, &value)
                        .map_err(|e| io_error("tmpfs", e))?;
                }
                let mount = fs
                    .mount(ctx.mount_flags(false), AtimeFlags::default())
                    .map_err(|e| io_error("tmpfs", e))?;
                ctx.attach_onto_dir(&at, &mount)
            },
        ))
    }
}

#[cfg(test)]
mod capability_tests {
    use super::*;
    use crate::bindings::mount::TargetRole;
    use crate::capability::context::testing::TestCall;
    use crate::policy::{Grants, TmpfsGrant};
    use std::path::Path;

    fn target(t: &mut TestCall) -> (Resource<TargetHandle>, std::path::PathBuf) {
        let path = t.dir.path().join("target");
        std::fs::create_dir(&path).unwrap();
        let handle = TargetHandle::open(&path, TargetRole::Publish).unwrap();
        (t.ctx.table.push(handle).unwrap(), path)
    }

    fn options(size_bytes: u64) -> TmpfsOptions {
        TmpfsOptions {
            size_bytes,
            mode: 0o750,
            uid: 1000,
            gid: 2000,
        }
    }

    fn mounted(path: &Path) -> bool {
        crate::sys::mount::is_mount_point(path).unwrap()
    }

    #[test]
    fn a_tmpfs_mounts_within_its_cap_with_owner_mode_and_hardening_or_is_denied_and_audited() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "privileged test: run as root (scripts/test.sh); it must not be skipped"
        );
        crate::sys::mount::enter_private_mount_namespace().unwrap();
        let grants = Grants {
            mount: true,
            tmpfs: Some(TmpfsGrant { max_bytes: 1 << 20 }),
            ..Grants::default()
        };

        let mut none = TestCall::new(None, Grants::default());
        let (at, path) = target(&mut none);
        let e = Host::mount_onto(&mut none.ctx, at, options(4096))
            .unwrap()
            .unwrap_err();
        assert!(matches!(e, DriverError::PermissionDenied(m) if m.contains("no tmpfs grant")));
        assert!(!mounted(&path));
        assert_eq!(none.audit()[0]["decision"], "deny");

        let mut t = TestCall::new(None, grants);
        let (at, path) = target(&mut t);
        let big = Host::mount_onto(&mut t.ctx, Resource::new_borrow(at.rep()), options(2 << 20))
            .unwrap()
            .unwrap_err();
        assert!(matches!(big, DriverError::PermissionDenied(m) if m.contains("max_bytes")));
        assert!(!mounted(&path), "mounted past its cap");
        Host::mount_onto(&mut t.ctx, Resource::new_borrow(at.rep()), options(1 << 20))
            .unwrap()
            .unwrap();
        assert!(mounted(&path));
        let st = nix::sys::statvfs::statvfs(&path).unwrap();
        assert_eq!(st.blocks() * st.fragment_size(), 1 << 20);
        use nix::sys::statvfs::FsFlags;
        assert!(st.flags().contains(FsFlags::ST_NOSUID | FsFlags::ST_NODEV));
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o750, 1000, 2000)
        );
        // Writing past the size fails inside the tmpfs, not on the node.
        let fill = std::fs::write(path.join("fill"), vec![0u8; 2 << 20]);
        assert!(fill.is_err());
        crate::sys::mount::unmount(&path).unwrap();
        let records = t.audit();
        let decisions: Vec<_> = records.iter().map(|r| r["decision"].clone()).collect();
        assert_eq!(decisions, ["deny", "allow"], "{records:#?}");
        assert_eq!(records[1]["args"]["flags"], json!(["nosuid", "nodev"]));
    }
}
