//! `wasmvol:driver/device`: loop devices over backing files in the storage
//! root, and the filesystem tools, run by the host.
//!
//! Ownership is the host's and lives in the kernel: every loop device the
//! host attaches for a driver carries the driver's tag as its kernel file
//! name, and a [`BlockDeviceHandle`] is only ever made for a device whose
//! kernel status shows both that tag and the very backing file (device and
//! inode) the host opened beneath the driver's root. Nothing to persist, so
//! a host restart (or crash) finds exactly what is attached. A driver cannot
//! name a device node, a program or a raw tool argument.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use serde_json::json;
use wasmtime::component::Resource;

use crate::bindings::device::{FsCheck, FsType, Host, HostBlockDevice, MkfsOptions};
use crate::bindings::mount::TargetShape;
use crate::bindings::volumes::Root;
use crate::bindings::DriverError;
use crate::capability::context::{io_error, CallContext, CapError};
use crate::capability::mount::TargetHandle;
use crate::capability::table::{CapOp, Need};
use crate::capability::volumes::BeneathRoot;
use crate::sys::fstools::{self, Fs, Label};
use crate::sys::loopdev::{backing_of, Backing, LoopDevice};
use crate::sys::mount as sys_mount;

/// A block device of this driver (checked when made): a loop device the
/// host attached for it, or one of its own logical volumes (`lvm.open`).
#[derive(Debug)]
pub struct BlockDeviceHandle {
    block: Block,
    detached: bool,
}

/// What a [`BlockDeviceHandle`] stands for.
#[derive(Debug)]
pub(crate) enum Block {
    /// A loop device over a backing file beneath the storage root.
    Loop {
        /// The device.
        dev: LoopDevice,
        /// The backing file it must still be attached to.
        backing: Backing,
    },
    /// A logical volume carrying this driver's tag.
    Lv {
        /// Its device-mapper node.
        node: std::path::PathBuf,
        /// The node's device number when opened: the very device that was checked.
        rdev: u64,
    },
}

impl BlockDeviceHandle {
    /// A handle on one of the driver's logical volumes, checked by the caller.
    pub(crate) fn logical_volume(node: std::path::PathBuf, rdev: u64) -> Self {
        Self {
            block: Block::Lv { node, rdev },
            detached: false,
        }
    }

    fn node(&self) -> std::path::PathBuf {
        match &self.block {
            Block::Loop { dev, .. } => dev.node(),
            Block::Lv { node, .. } => node.clone(),
        }
    }
}

/// A live device, re-checked for this use.
#[derive(Debug, Clone)]
enum Device {
    Loop(LoopDevice),
    Lv(std::path::PathBuf),
}

impl Device {
    fn node(&self) -> std::path::PathBuf {
        match self {
            Device::Loop(d) => d.node(),
            Device::Lv(node) => node.clone(),
        }
    }

    fn size(&self) -> std::io::Result<u64> {
        match self {
            Device::Loop(d) => d.size(),
            Device::Lv(node) => crate::sys::lvm::size_of(node),
        }
    }
}

/// The kernel-side tag of loop devices attached for `driver`.
fn owner_tag(driver: &str) -> String {
    let digest = crate::digest::Sha256Digest::of(driver.as_bytes()).to_hex();
    format!("wasmvol:{}", &digest[..32])
}

fn fs_of(t: FsType) -> Fs {
    match t {
        FsType::Ext4 => Fs::Ext4,
        FsType::Xfs => Fs::Xfs,
    }
}

fn failed(e: DriverError) -> CapError {
    CapError::Failed(e)
}

/// Mount options with a flag of their own; the rest go to the filesystem as data.
fn mount_flag(option: &str) -> Option<libc::c_ulong> {
    Some(match option {
        "ro" => libc::MS_RDONLY,
        "noatime" => libc::MS_NOATIME,
        "nodiratime" => libc::MS_NODIRATIME,
        "relatime" => libc::MS_RELATIME,
        "sync" => libc::MS_SYNCHRONOUS,
        _ => return None,
    })
}

impl CallContext {
    /// Opens a backing file beneath the root for reading and writing.
    fn open_backing(&self, root: &Resource<Root>, path: &str) -> Result<std::fs::File, CapError> {
        let p = BeneathRoot::parse(path)?;
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.read(true).write(true);
        let f = self
            .granted_root(root)?
            .open_with(p.as_path(), &opts)
            .map_err(|e| io_error(path, e))?;
        if !f.metadata().map_err(|e| io_error(path, e))?.is_file() {
            return Err(failed(DriverError::InvalidArgument(format!(
                "{path} is not a regular file"
            ))));
        }
        Ok(f.into_std())
    }

    /// The device the host attached for this driver to `backing`, if any.
    fn owned_device(&self, backing: Backing) -> Result<Option<LoopDevice>, CapError> {
        let tag = owner_tag(self.driver());
        for dev in LoopDevice::all().map_err(|e| io_error("listing loop devices", e))? {
            match dev.status() {
                Ok(Some((b, t))) if b == backing && t == tag => return Ok(Some(dev)),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// The device of a live handle, re-checked against the kernel: a loop
    /// device must still be attached to the same backing file, a logical
    /// volume's node must still be the same device.
    fn device_of(&self, h: &Resource<BlockDeviceHandle>) -> Result<Device, CapError> {
        let handle = self
            .table
            .get(h)
            .map_err(|e| CapError::Denied(format!("invalid device handle: {e}")))?;
        if handle.detached {
            return Err(failed(DriverError::FailedPrecondition(
                "the device was detached".into(),
            )));
        }
        match &handle.block {
            Block::Loop { dev, backing } => {
                match dev.backing().map_err(|e| io_error("loop status", e))? {
                    Some(b) if b == *backing => Ok(Device::Loop(*dev)),
                    _ => Err(CapError::Denied(format!(
                        "{} is no longer backed by this driver's file",
                        dev.node().display()
                    ))),
                }
            }
            Block::Lv { node, rdev } => {
                use std::os::unix::fs::MetadataExt;
                match std::fs::metadata(node) {
                    Ok(m) if m.rdev() == *rdev => Ok(Device::Lv(node.clone())),
                    _ => Err(CapError::Denied(format!(
                        "{} is no longer the logical volume that was opened",
                        node.display()
                    ))),
                }
            }
        }
    }

    /// Whether a handle is a logical volume: its uses need `grants.lvm`
    /// instead of `grants.device` ([`Need::on_lv`]). A stale handle traps.
    fn is_lv(&self, h: &Resource<BlockDeviceHandle>) -> wasmtime::Result<bool> {
        Ok(matches!(self.table.get(h)?.block, Block::Lv { .. }))
    }

    /// [`CallContext::gate`] for a use of a device handle.
    fn gate_device<T>(
        &mut self,
        lv: bool,
        op: CapOp,
        extra: &[Need<'_>],
        args: serde_json::Value,
        f: impl FnOnce(&mut Self) -> Result<T, CapError>,
    ) -> Result<T, DriverError> {
        if lv {
            let needs = op
                .needs()
                .iter()
                .map(|n| n.on_lv())
                .chain(extra.iter().copied());
            self.gate_with(op, needs, args, f)
        } else {
            self.gate(op, extra, args, f)
        }
    }

    /// The granted filesystem on a device (refusing none, foreign or ungranted ones).
    fn filesystem_on(&self, dev: &Device) -> Result<Fs, CapError> {
        let name = fstools::probe(&dev.node())
            .map_err(|e| io_error("probe", e))?
            .ok_or_else(|| {
                failed(DriverError::FailedPrecondition(
                    "the device holds no filesystem".into(),
                ))
            })?;
        let fs = Fs::from_name(&name).ok_or_else(|| {
            failed(DriverError::FailedPrecondition(format!(
                "the device holds {name}, which the host does not manage"
            )))
        })?;
        self.check_fs(fs)?;
        Ok(fs)
    }

    /// A filesystem found on a device (known only once probed) must be granted too.
    fn check_fs(&self, fs: Fs) -> Result<(), CapError> {
        Need::FsType(fs)
            .check(&self.env.policy.grants)
            .map_err(CapError::Denied)
    }

    fn target_of(&mut self, t: &Resource<TargetHandle>) -> Result<&mut TargetHandle, CapError> {
        self.table
            .get_mut(t)
            .map_err(|e| CapError::Denied(format!("invalid target handle: {e}")))
    }

    fn device_args(&self, h: &Resource<BlockDeviceHandle>) -> serde_json::Value {
        match self.table.get(h) {
            Ok(d) => json!({"device": d.node()}),
            Err(_) => json!({"device": null}),
        }
    }
}

impl HostBlockDevice for CallContext {
    fn node(&mut self, h: Resource<BlockDeviceHandle>) -> wasmtime::Result<String> {
        let lv = self.is_lv(&h)?;
        let args = self.device_args(&h);
        let node = self.gate_device(lv, CapOp::DeviceNode, &[], args, |ctx| {
            let handle = ctx
                .table
                .get(&h)
                .map_err(|e| CapError::Denied(format!("invalid device handle: {e}")))?;
            Ok(handle.node().display().to_string())
        });
        // The WIT function cannot fail: a refusal (no device grant) ends the call.
        node.map_err(|e| wasmtime::Error::msg(format!("device.node: {e:?}")))
    }

    fn size(
        &mut self,
        h: Resource<BlockDeviceHandle>,
    ) -> wasmtime::Result<Result<u64, DriverError>> {
        let lv = self.is_lv(&h)?;
        let args = self.device_args(&h);
        Ok(self.gate_device(lv, CapOp::DeviceSize, &[], args, |ctx| {
            ctx.device_of(&h)?.size().map_err(|e| io_error("size", e))
        }))
    }

    fn refresh_size(
        &mut self,
        h: Resource<BlockDeviceHandle>,
    ) -> wasmtime::Result<Result<u64, DriverError>> {
        let lv = self.is_lv(&h)?;
        let args = self.device_args(&h);
        Ok(
            self.gate_device(lv, CapOp::DeviceRefreshSize, &[], args, |ctx| {
                let dev = ctx.device_of(&h)?;
                // A logical volume's size is the kernel's as soon as `lvm.extend` returns.
                if let Device::Loop(d) = &dev {
                    d.refresh_capacity().map_err(|e| io_error("refresh", e))?;
                }
                dev.size().map_err(|e| io_error("size", e))
            }),
        )
    }

    fn detach(
        &mut self,
        h: Resource<BlockDeviceHandle>,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let lv = self.is_lv(&h)?;
        let args = self.device_args(&h);
        Ok(self.gate_device(lv, CapOp::DeviceDetach, &[], args, |ctx| {
            match ctx.device_of(&h)? {
                Device::Loop(d) => d.detach().map_err(|e| io_error("detach", e))?,
                Device::Lv(_) => {
                    return Err(failed(DriverError::InvalidArgument(
                        "a logical volume is not detached: remove it with lvm.remove".into(),
                    )))
                }
            }
            if let Ok(handle) = ctx.table.get_mut(&h) {
                handle.detached = true;
            }
            Ok(())
        }))
    }

    fn make_filesystem(
        &mut self,
        h: Resource<BlockDeviceHandle>,
        fs: FsType,
        options: MkfsOptions,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let lv = self.is_lv(&h)?;
        let mut args = self.device_args(&h);
        args["fs"] = json!(fs_of(fs).name());
        args["label"] = json!(options.label);
        let fs = fs_of(fs);
        Ok(self.gate_device(
            lv,
            CapOp::DeviceMakeFilesystem,
            &[Need::FsType(fs)],
            args,
            |ctx| {
                let label = match &options.label {
                    Some(l) => Some(Label::parse(l).map_err(CapError::Denied)?),
                    None => None,
                };
                let dev = ctx.device_of(&h)?;
                if let Some(existing) =
                    fstools::probe(&dev.node()).map_err(|e| io_error("probe", e))?
                {
                    return Err(failed(DriverError::FailedPrecondition(format!(
                        "{} already holds a {existing} filesystem; the host never reformats",
                        dev.node().display()
                    ))));
                }
                fstools::mkfs(&dev.node(), fs, label.as_ref()).map_err(|e| io_error("mkfs", e))
            },
        ))
    }

    fn probe_filesystem(
        &mut self,
        h: Resource<BlockDeviceHandle>,
    ) -> wasmtime::Result<Result<Option<FsType>, DriverError>> {
        let lv = self.is_lv(&h)?;
        let args = self.device_args(&h);
        Ok(
            self.gate_device(lv, CapOp::DeviceProbeFilesystem, &[], args, |ctx| {
                let dev = ctx.device_of(&h)?;
                match fstools::probe(&dev.node()).map_err(|e| io_error("probe", e))? {
                    None => Ok(None),
                    Some(name) => match Fs::from_name(&name) {
                        Some(Fs::Ext4) => Ok(Some(FsType::Ext4)),
                        Some(Fs::Xfs) => Ok(Some(FsType::Xfs)),
                        None => Err(failed(DriverError::FailedPrecondition(format!(
                            "{} holds a {name} filesystem the host does not manage",
                            dev.node().display()
                        )))),
                    },
                }
            }),
        )
    }

    fn check_filesystem(
        &mut self,
        h: Resource<BlockDeviceHandle>,
    ) -> wasmtime::Result<Result<FsCheck, DriverError>> {
        let lv = self.is_lv(&h)?;
        let args = self.device_args(&h);
        Ok(
            self.gate_device(lv, CapOp::DeviceCheckFilesystem, &[], args, |ctx| {
                let dev = ctx.device_of(&h)?;
                let fs = ctx.filesystem_on(&dev)?;
                let (clean, report) =
                    fstools::check(&dev.node(), fs).map_err(|e| io_error("fsck", e))?;
                Ok(FsCheck { clean, report })
            }),
        )
    }

    fn grow_filesystem(
        &mut self,
        h: Resource<BlockDeviceHandle>,
        mounted_at: Option<Resource<TargetHandle>>,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let lv = self.is_lv(&h)?;
        let args = self.device_args(&h);
        Ok(
            self.gate_device(lv, CapOp::DeviceGrowFilesystem, &[], args, |ctx| {
                let dev = ctx.device_of(&h)?;
                let fs = ctx.filesystem_on(&dev)?;
                let at = match &mounted_at {
                    Some(t) => Some(ctx.target_of(t)?.path().to_owned()),
                    None => None,
                };
                fstools::grow(&dev.node(), fs, at.as_deref()).map_err(|e| io_error("grow", e))
            }),
        )
    }

    fn mount_onto(
        &mut self,
        h: Resource<BlockDeviceHandle>,
        at: Resource<TargetHandle>,
        fs: FsType,
        options: Vec<String>,
        read_only: bool,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let lv = self.is_lv(&h)?;
        self.table.get(&at)?;
        let mut args = self.device_args(&h);
        args["target"] = json!(self.table.get(&at)?.path());
        args["fs"] = json!(fs_of(fs).name());
        args["options"] = json!(options);
        args["read_only"] = json!(read_only);
        args["flags"] = self.hardening_names();
        let fs = fs_of(fs);
        let needs: Vec<Need<'_>> = std::iter::once(Need::FsType(fs))
            .chain(options.iter().map(|o| Need::MountOption(o)))
            .collect();
        Ok(
            self.gate_device(lv, CapOp::DeviceMountOnto, &needs, args, |ctx| {
                let mut flags = ctx.mount_flags(read_only).ms_flags();
                let mut data: Vec<&str> = Vec::new();
                for o in &options {
                    match mount_flag(o) {
                        Some(f) => flags |= f,
                        None => data.push(o),
                    }
                }
                let dev = ctx.device_of(&h)?;
                let target = ctx.target_of(&at)?;
                if target.shape() != TargetShape::Directory {
                    return Err(failed(DriverError::InvalidArgument(
                        "a filesystem mounts onto a directory target".into(),
                    )));
                }
                let fd = target.fd().map_err(|e| io_error("target", e))?;
                // The target is the descriptor opened for this request, named through /proc.
                let target_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
                let c = |s: &str| {
                    CString::new(s).map_err(|_| {
                        failed(DriverError::InvalidArgument("NUL in mount argument".into()))
                    })
                };
                let (src, tgt, fstype, data) = (
                    c(&dev.node().display().to_string())?,
                    c(&target_path)?,
                    c(fs.name())?,
                    c(&data.join(","))?,
                );
                // SAFETY: all pointers are NUL-terminated strings that outlive the call.
                let ret = unsafe {
                    libc::mount(
                        src.as_ptr(),
                        tgt.as_ptr(),
                        fstype.as_ptr(),
                        flags,
                        data.as_ptr().cast(),
                    )
                };
                if ret != 0 {
                    return Err(io_error("mount", std::io::Error::last_os_error()));
                }
                Ok(())
            }),
        )
    }

    fn bind_node_onto(
        &mut self,
        h: Resource<BlockDeviceHandle>,
        at: Resource<TargetHandle>,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        let lv = self.is_lv(&h)?;
        self.table.get(&at)?;
        let mut args = self.device_args(&h);
        args["target"] = json!(self.table.get(&at)?.path());
        Ok(
            self.gate_device(lv, CapOp::DeviceBindNodeOnto, &[], args, |ctx| {
                let dev = ctx.device_of(&h)?;
                let target = ctx.target_of(&at)?;
                if target.shape() != TargetShape::File {
                    return Err(failed(DriverError::InvalidArgument(
                        "a device node binds onto a file target".into(),
                    )));
                }
                let node =
                    sys_mount::open_path(&dev.node()).map_err(|e| io_error("device node", e))?;
                let fd = target.fd().map_err(|e| io_error("target", e))?;
                // The one mount without the hardening flags: it is the device
                // node itself, which `nodev` would make unusable.
                sys_mount::bind(node.as_fd(), fd, sys_mount::MountFlags::default())
                    .map_err(|e| io_error("bind", e))
            }),
        )
    }

    fn drop(&mut self, rep: Resource<BlockDeviceHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl Host for CallContext {
    fn create_backing_file(
        &mut self,
        root: Resource<Root>,
        path: String,
        size: u64,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        Ok(self.gate(
            CapOp::DeviceCreateBackingFile,
            &[Need::FileBytes(size)],
            json!({"path": path, "size": size}),
            |ctx| {
                let p = BeneathRoot::parse(&path)?;
                let mut opts = cap_std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                let f = ctx
                    .granted_root(&root)?
                    .open_with(p.as_path(), &opts)
                    .map_err(|e| io_error(&path, e))?;
                f.set_len(size).map_err(|e| io_error(&path, e))
            },
        ))
    }

    fn grow_backing_file(
        &mut self,
        root: Resource<Root>,
        path: String,
        size: u64,
    ) -> wasmtime::Result<Result<(), DriverError>> {
        Ok(self.gate(
            CapOp::DeviceGrowBackingFile,
            &[Need::FileBytes(size)],
            json!({"path": path, "size": size}),
            |ctx| {
                let f = ctx.open_backing(&root, &path)?;
                let len = f.metadata().map_err(|e| io_error(&path, e))?.len();
                if size > len {
                    f.set_len(size).map_err(|e| io_error(&path, e))?;
                }
                Ok(())
            },
        ))
    }

    fn attach(
        &mut self,
        root: Resource<Root>,
        path: String,
    ) -> wasmtime::Result<Result<Resource<BlockDeviceHandle>, DriverError>> {
        Ok(
            self.gate(CapOp::DeviceAttach, &[], json!({"path": path}), |ctx| {
                let file = ctx.open_backing(&root, &path)?;
                let backing = backing_of(&file).map_err(|e| io_error(&path, e))?;
                let dev = match ctx.owned_device(backing)? {
                    Some(dev) => dev,
                    None => {
                        // One attach at a time per driver, so two cannot
                        // both pass the count below.
                        let env = ctx.env.clone();
                        let _one = env.attach_lock.lock().unwrap_or_else(|p| p.into_inner());
                        ctx.check_device_count()?;
                        LoopDevice::attach(&file, &owner_tag(ctx.driver()))
                            .map_err(|e| io_error("attach", e))?
                    }
                };
                ctx.table
                    .push(BlockDeviceHandle {
                        block: Block::Loop { dev, backing },
                        detached: false,
                    })
                    .map_err(|e| failed(DriverError::ResourceExhausted(e.to_string())))
            }),
        )
    }

    fn find_attached(
        &mut self,
        root: Resource<Root>,
        path: String,
    ) -> wasmtime::Result<Result<Option<Resource<BlockDeviceHandle>>, DriverError>> {
        Ok(self.gate(
            CapOp::DeviceFindAttached,
            &[],
            json!({"path": path}),
            |ctx| {
                let p = BeneathRoot::parse(&path)?;
                let file = match ctx.granted_root(&root)?.open(p.as_path()) {
                    Ok(f) => f.into_std(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io_error(&path, e)),
                };
                let backing = backing_of(&file).map_err(|e| io_error(&path, e))?;
                match ctx.owned_device(backing)? {
                    None => Ok(None),
                    Some(dev) => ctx
                        .table
                        .push(BlockDeviceHandle {
                            block: Block::Loop { dev, backing },
                            detached: false,
                        })
                        .map(Some)
                        .map_err(|e| failed(DriverError::ResourceExhausted(e.to_string()))),
                }
            },
        ))
    }
}

impl CallContext {
    /// Refuses an attach past the grant's `max_devices`: the driver's loop
    /// devices are those over backing files in its storage root.
    fn check_device_count(&self) -> Result<(), CapError> {
        let policy = &self.env.policy;
        let (Some(grant), Some(storage)) = (&policy.grants.device, &policy.grants.storage) else {
            return Ok(());
        };
        let attached =
            loops_under(&storage.root).map_err(|e| io_error("counting loop devices", e))?;
        if attached.len() >= grant.max_devices as usize {
            return Err(CapError::Denied(format!(
                "{} loop devices attached, grants.device.max_devices allows {}",
                attached.len(),
                grant.max_devices
            )));
        }
        Ok(())
    }
}

/// Loop devices (`loop3`) whose backing file lies under `dir`: what a
/// driver working beneath it left attached.
pub fn loops_under(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/sys/block")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let backing_file = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
            .unwrap_or_default();
        if Path::new(backing_file.trim()).starts_with(dir) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Detaches every loop device whose backing file lies under `dir` (test and
/// operator cleanup; never called on a driver's behalf).
pub fn detach_all_under(dir: &Path) -> std::io::Result<usize> {
    let loops = loops_under(dir)?;
    for name in &loops {
        if let Some(num) = name.strip_prefix("loop").and_then(|s| s.parse().ok()) {
            LoopDevice(num).detach()?;
        }
    }
    Ok(loops.len())
}

#[cfg(test)]
mod capability_tests {
    use super::*;
    use crate::capability::context::testing::TestCall;
    use crate::capability::volumes::StorageRoot;
    use crate::policy::{DeviceGrant, Grants, StorageAccess};

    fn device_grant(max_file_bytes: u64) -> Grants {
        Grants {
            device: Some(DeviceGrant {
                max_file_bytes,
                max_devices: 2,
            }),
            fs_types: [Fs::Ext4].into(),
            ..Grants::default()
        }
    }

    fn root_of(t: &mut TestCall) -> Resource<Root> {
        let root: Resource<StorageRoot> = crate::bindings::volumes::Host::open_root(&mut t.ctx)
            .unwrap()
            .unwrap();
        Resource::new_own(root.rep())
    }

    fn borrow<T: 'static>(r: &Resource<T>) -> Resource<T> {
        Resource::new_borrow(r.rep())
    }

    fn decisions(t: &mut TestCall, operation: &str) -> Vec<String> {
        t.audit()
            .iter()
            .filter(|r| r["operation"] == operation)
            .map(|r| r["decision"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Detaches every loop device over a file of this test, even when the test fails.
    struct DetachOnDrop(std::path::PathBuf);

    impl Drop for DetachOnDrop {
        fn drop(&mut self) {
            detach_all_under(&self.0).expect("loop devices of the test detach");
        }
    }

    #[test]
    fn backing_files_are_sized_within_the_grant_beneath_the_root_or_denied_audited_and_not_made() {
        let mut t = TestCall::new(Some(StorageAccess::ReadWrite), device_grant(1 << 20));
        let r = root_of(&mut t);
        Host::create_backing_file(&mut t.ctx, borrow(&r), "ok.img".into(), 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(
            std::fs::metadata(t.dir.path().join("root/ok.img"))
                .unwrap()
                .len(),
            1 << 20
        );
        let too_big = Host::create_backing_file(&mut t.ctx, borrow(&r), "big.img".into(), 2 << 20)
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&too_big, DriverError::PermissionDenied(m) if m.contains("1048576")),
            "{too_big:?}"
        );
        assert!(!t.dir.path().join("root/big.img").exists());
        let grown = Host::grow_backing_file(&mut t.ctx, borrow(&r), "ok.img".into(), 4 << 20)
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(grown, DriverError::PermissionDenied(_)),
            "{grown:?}"
        );
        let escape =
            Host::create_backing_file(&mut t.ctx, borrow(&r), "../outside/x.img".into(), 4096)
                .unwrap()
                .unwrap_err();
        assert!(
            matches!(escape, DriverError::PermissionDenied(_)),
            "{escape:?}"
        );
        assert_eq!(
            std::fs::read_dir(t.dir.path().join("outside"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::metadata(t.dir.path().join("root/ok.img"))
                .unwrap()
                .len(),
            1 << 20,
            "a denied grow changed the file"
        );
        assert_eq!(
            decisions(&mut t, "device.create-backing-file"),
            ["allow", "deny", "deny"]
        );
    }

    #[test]
    fn attaching_past_max_devices_is_denied_audited_and_attaches_nothing() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "privileged test: run as root (scripts/test.sh); it must not be skipped"
        );
        // device_grant allows two devices at once.
        let mut t = TestCall::new(Some(StorageAccess::ReadWrite), device_grant(1 << 20));
        let _cleanup = DetachOnDrop(t.dir.path().to_owned());
        let r = root_of(&mut t);
        for name in ["a.img", "b.img", "c.img"] {
            Host::create_backing_file(&mut t.ctx, borrow(&r), name.into(), 1 << 20)
                .unwrap()
                .unwrap();
        }
        for name in ["a.img", "b.img"] {
            Host::attach(&mut t.ctx, borrow(&r), name.into())
                .unwrap()
                .unwrap();
        }
        let third = Host::attach(&mut t.ctx, borrow(&r), "c.img".into())
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&third, DriverError::PermissionDenied(m) if m.contains("max_devices allows 2")),
            "{third:?}"
        );
        assert_eq!(
            loops_under(t.dir.path()).unwrap().len(),
            2,
            "no third device"
        );
        // Its own device again is no new device.
        Host::attach(&mut t.ctx, borrow(&r), "a.img".into())
            .unwrap()
            .unwrap();
        assert_eq!(
            decisions(&mut t, "device.attach"),
            ["allow", "allow", "deny", "allow"]
        );
    }

    #[test]
    fn without_the_device_grant_nothing_is_made_or_attached() {
        let mut t = TestCall::new(Some(StorageAccess::ReadWrite), Grants::default());
        std::fs::write(t.dir.path().join("root/disk.img"), vec![0; 4096]).unwrap();
        let r = root_of(&mut t);
        let made = Host::create_backing_file(&mut t.ctx, borrow(&r), "new.img".into(), 4096)
            .unwrap()
            .unwrap_err();
        assert!(matches!(made, DriverError::PermissionDenied(m) if m.contains("device")));
        let attached = Host::attach(&mut t.ctx, borrow(&r), "disk.img".into())
            .unwrap()
            .unwrap_err();
        assert!(matches!(attached, DriverError::PermissionDenied(_)));
        assert!(!t.dir.path().join("root/new.img").exists());
        let disk = std::fs::File::open(t.dir.path().join("root/disk.img")).unwrap();
        let backing = backing_of(&disk).unwrap();
        let over_disk = LoopDevice::all()
            .unwrap()
            .into_iter()
            .filter(|d| d.backing().ok().flatten() == Some(backing))
            .count();
        assert_eq!(over_disk, 0, "a loop device was attached over disk.img");
        assert_eq!(decisions(&mut t, "device.attach"), ["deny"]);
    }

    #[test]
    fn an_attached_device_is_the_drivers_own_is_found_again_and_refuses_an_ungranted_fs() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "privileged test: run as root (scripts/test.sh); it must not be skipped"
        );
        let mut t = TestCall::new(Some(StorageAccess::ReadWrite), device_grant(64 << 20));
        let _cleanup = DetachOnDrop(t.dir.path().to_owned());
        let r = root_of(&mut t);
        Host::create_backing_file(&mut t.ctx, borrow(&r), "disk.img".into(), 16 << 20)
            .unwrap()
            .unwrap();
        let dev = Host::attach(&mut t.ctx, borrow(&r), "disk.img".into())
            .unwrap()
            .unwrap();
        let node = HostBlockDevice::node(&mut t.ctx, borrow(&dev)).unwrap();
        assert!(node.starts_with("/dev/loop"), "{node}");
        assert_eq!(
            HostBlockDevice::size(&mut t.ctx, borrow(&dev))
                .unwrap()
                .unwrap(),
            16 << 20
        );
        // The same backing file finds the same device, not a second one.
        let again = Host::find_attached(&mut t.ctx, borrow(&r), "disk.img".into())
            .unwrap()
            .unwrap()
            .expect("the attached device is found");
        assert_eq!(
            HostBlockDevice::node(&mut t.ctx, borrow(&again)).unwrap(),
            node
        );
        // xfs is not granted: refused before any tool runs, and the device stays blank.
        let xfs = HostBlockDevice::make_filesystem(
            &mut t.ctx,
            borrow(&dev),
            FsType::Xfs,
            MkfsOptions { label: None },
        )
        .unwrap()
        .unwrap_err();
        assert!(matches!(xfs, DriverError::PermissionDenied(_)), "{xfs:?}");
        assert!(fstools::probe(Path::new(&node)).unwrap().is_none());
        HostBlockDevice::detach(&mut t.ctx, borrow(&dev))
            .unwrap()
            .unwrap();
        assert!(
            Host::find_attached(&mut t.ctx, borrow(&r), "disk.img".into())
                .unwrap()
                .unwrap()
                .is_none()
        );
        assert_eq!(decisions(&mut t, "device.make-filesystem"), ["deny"]);
    }
}
