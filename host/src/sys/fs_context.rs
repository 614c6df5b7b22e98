//! New filesystems made with the kernel's filesystem-context API (`fsopen`,
//! `fsconfig`, `fsmount`): the host sets each parameter by name, one at a
//! time, so no option string is ever assembled that a value could break
//! out of, and the result is a detached mount (a file descriptor) that the
//! host attaches onto a target handle or keeps as a root directory. Nothing
//! is mounted on any host path until then, and a detached mount is gone
//! when its descriptor closes.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::mount::MountFlags;

const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

/// Per-mount access-time flags (set on the mount, not the filesystem).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtimeFlags {
    /// `noatime`.
    pub noatime: bool,
    /// `nodiratime`.
    pub nodiratime: bool,
}

/// A filesystem being configured, before it exists.
#[derive(Debug)]
pub struct FsContext {
    fd: OwnedFd,
    fs_type: String,
}

fn c(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "text contains NUL"))
}

impl FsContext {
    /// Starts configuring a filesystem of type `fs_type` (`tmpfs`, `nfs4`...).
    pub fn open(fs_type: &str) -> io::Result<Self> {
        let name = c(fs_type)?;
        // SAFETY: plain syscall with a NUL-terminated name.
        let fd = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: the kernel returned a fresh fd that we now own.
            fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
            fs_type: fs_type.to_owned(),
        })
    }

    /// Sets a flag parameter (`hard`, `nolock`...).
    pub fn set_flag(&self, key: &str) -> io::Result<()> {
        self.config(FSCONFIG_SET_FLAG, Some(key), None)
            .map_err(|e| self.explain(e, key))
    }

    /// Sets a string parameter (`source`, `addr`, `size`...).
    pub fn set_string(&self, key: &str, value: &str) -> io::Result<()> {
        self.config(FSCONFIG_SET_STRING, Some(key), Some(value))
            .map_err(|e| self.explain(e, key))
    }

    fn config(&self, cmd: libc::c_uint, key: Option<&str>, value: Option<&str>) -> io::Result<()> {
        let key = key.map(c).transpose()?;
        let value = value.map(c).transpose()?;
        let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        // SAFETY: the fd is ours; key and value are NUL-terminated or null as
        // the command expects; aux is unused.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                cmd,
                ptr(&key),
                ptr(&value),
                0 as libc::c_int,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The kernel's own words about a failure (the context's message log).
    fn explain(&self, e: io::Error, what: &str) -> io::Error {
        let mut said = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            // SAFETY: reads into a buffer we own from our own fd; the kernel
            // hands out one queued message per read, and ENODATA when none is left.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            said.push(
                String::from_utf8_lossy(&buf[..n as usize])
                    .trim()
                    .to_owned(),
            );
        }
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(" ({})", said.join("; "))
        };
        io::Error::new(e.kind(), format!("{} {what}: {e}{said}", self.fs_type))
    }

    /// Creates the filesystem and makes a detached mount of it with `flags`.
    pub fn mount(self, flags: MountFlags, atime: AtimeFlags) -> io::Result<OwnedFd> {
        self.config(FSCONFIG_CMD_CREATE, None, None)
            .map_err(|e| self.explain(e, "create"))?;
        let mut attrs = flags.attrs();
        if atime.noatime {
            attrs |= MOUNT_ATTR_NOATIME;
        }
        if atime.nodiratime {
            attrs |= MOUNT_ATTR_NODIRATIME;
        }
        // SAFETY: the fd is ours; attrs is a plain bit set.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.fd.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(self.explain(io::Error::last_os_error(), "mount"));
        }
        // SAFETY: the kernel returned a fresh fd that we now own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

impl AsFd for FsContext {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens the root directory of a detached mount as a directory (the
/// mount's own descriptor is `O_PATH`), for use as a capability root.
pub fn open_root(mount: &OwnedFd) -> io::Result<std::fs::File> {
    // SAFETY: openat on a valid dirfd with a NUL-terminated relative path.
    let fd = unsafe {
        libc::openat(
            mount.as_raw_fd(),
            c".".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from openat(2).
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tmpfs_is_made_detached_with_its_size_and_flags_and_reads_as_a_directory() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "privileged test: run as root (scripts/test.sh); it must not be skipped"
        );
        let ctx = FsContext::open("tmpfs").unwrap();
        ctx.set_string("size", "1048576").unwrap();
        ctx.set_string("mode", "0750").unwrap();
        let bad = ctx.set_string("no-such-parameter", "1").unwrap_err();
        assert!(bad.to_string().contains("no-such-parameter"), "{bad}");
        let mount = ctx
            .mount(
                MountFlags {
                    nosuid: true,
                    nodev: true,
                    ..MountFlags::default()
                },
                AtimeFlags::default(),
            )
            .unwrap();
        let root = open_root(&mount).unwrap();
        let st = nix::sys::statvfs::fstatvfs(&root).unwrap();
        assert_eq!(st.blocks() * st.fragment_size(), 1 << 20);
        assert!(st.flags().contains(
            nix::sys::statvfs::FsFlags::ST_NOSUID | nix::sys::statvfs::FsFlags::ST_NODEV
        ));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(root.metadata().unwrap().mode() & 0o7777, 0o750);
    }
}
