//! Mount mechanics on file descriptors (Linux new mount API).
//!
//! Sources and targets are open file descriptors resolved before the mount,
//! so nothing can swap a symlink in between the check and the mount: the
//! mount happens on exactly the object that was checked.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const OPEN_TREE_CLONE: libc::c_uint = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// Per-mount flags a bind carries, set on the detached copy before it is
/// attached, so the mount never exists without them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountFlags {
    /// Read-only.
    pub read_only: bool,
    /// Setuid and setgid bits ignored.
    pub nosuid: bool,
    /// Device nodes cannot be opened.
    pub nodev: bool,
    /// Nothing may be executed.
    pub noexec: bool,
}

impl MountFlags {
    pub(crate) fn attrs(self) -> u64 {
        [
            (self.read_only, MOUNT_ATTR_RDONLY),
            (self.nosuid, MOUNT_ATTR_NOSUID),
            (self.nodev, MOUNT_ATTR_NODEV),
            (self.noexec, MOUNT_ATTR_NOEXEC),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit)
    }

    /// The same flags for mount(2) (`MS_*`).
    pub fn ms_flags(self) -> libc::c_ulong {
        [
            (self.read_only, libc::MS_RDONLY),
            (self.nosuid, libc::MS_NOSUID),
            (self.nodev, libc::MS_NODEV),
            (self.noexec, libc::MS_NOEXEC),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit)
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// A detached copy of the mount tree at `fd` (a bind source), not yet attached anywhere.
pub fn clone_tree(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let empty = c"";
    // SAFETY: plain syscall on a valid fd and a NUL-terminated empty path.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// Makes a detached or attached mount (by fd) read-only.
pub fn set_read_only(mount: BorrowedFd<'_>) -> io::Result<()> {
    set_attrs(mount, MOUNT_ATTR_RDONLY)
}

/// Sets `MOUNT_ATTR_*` bits on a detached or attached mount (by fd).
fn set_attrs(mount: BorrowedFd<'_>, attr_set: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: attr outlives the call; size matches the struct the kernel reads.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches the detached mount `tree` onto the object `target` refers to.
pub fn attach(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    let empty = c"";
    // SAFETY: both fds are valid; both paths are empty C strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds `source` onto `target` with `flags`, without following any path.
pub fn bind(source: BorrowedFd<'_>, target: BorrowedFd<'_>, flags: MountFlags) -> io::Result<()> {
    let tree = clone_tree(source)?;
    if flags != MountFlags::default() {
        set_attrs(tree.as_fd(), flags.attrs())?;
    }
    attach(tree.as_fd(), target)
}

/// Makes the mount at `path` read-only (the path is the host's, never the driver's).
pub fn remount_read_only(path: &Path) -> io::Result<()> {
    let fd = open_path(path)?;
    set_read_only(fd.as_fd())
}

/// Moves the calling thread into a mount namespace of its own, with no
/// propagation to the parent, so whatever it mounts lives and dies with it.
/// For privileged tests (the host's own and the end-to-end suite's).
pub fn enter_private_mount_namespace() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    Ok(())
}

/// Mount points at or beneath `dir`, as the calling thread's mount
/// namespace sees them: what is left mounted there.
pub fn mounts_under(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    Ok(mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect())
}

/// Every mount point the calling thread sees, in mount order, read from
/// mountinfo alone: no path is touched, so a mount whose server is gone
/// (a hard NFS mount) cannot hang the caller.
pub fn mount_points() -> io::Result<Vec<std::path::PathBuf>> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .collect())
}

/// A mountinfo path with the kernel's octal escapes (`\040` for a space,
/// `\011`, `\012`, `\134`) turned back into their bytes.
fn unescape_mountinfo(field: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out).into()
}

/// How long [`unmount`] waits out a mount that is busy for a moment.
const BUSY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Unmounts the top mount at `path`. `Ok(false)` when nothing was mounted there.
///
/// A mount can be busy for a moment through no fault of its own: when any
/// thread of this process spawns a child (mkfs, lvm), the child holds a copy
/// of every descriptor the process has open, those of a request walking this
/// volume included, until its `exec` closes them. So `EBUSY` is retried, with
/// a growing pause, for up to [`BUSY_PATIENCE`]; a mount a pod really keeps
/// busy still fails, with `EBUSY`, and is never detached lazily.
pub fn unmount(path: &Path) -> io::Result<bool> {
    let c = cstr(path)?;
    let start = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        // SAFETY: NUL-terminated path.
        let ret = unsafe { libc::umount2(c.as_ptr(), libc::UMOUNT_NOFOLLOW) };
        if ret == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) => return Ok(false),
            Some(libc::EBUSY) if start.elapsed() < BUSY_PATIENCE => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            _ => return Err(err),
        }
    }
}

/// Opens `path` as an `O_PATH` handle without following a final symlink.
pub fn open_path(path: &Path) -> io::Result<OwnedFd> {
    open_o_path(path, 0)
}

/// As [`open_path`], but only a directory opens (`ENOTDIR` otherwise, a
/// symlink included): its type is then known without an `fstat`.
pub fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    open_o_path(path, libc::O_DIRECTORY)
}

fn open_o_path(path: &Path, extra: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: NUL-terminated path; the returned fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC | extra,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from open(2).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `statx` of `path` (final symlink not followed), asking for `mask`.
fn statx(path: &Path, mask: libc::c_uint) -> io::Result<libc::statx> {
    let c = cstr(path)?;
    // SAFETY: statx fills the zeroed buffer; the path is NUL-terminated.
    unsafe {
        let mut buf: libc::statx = std::mem::zeroed();
        let ret = libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            mask,
            &mut buf,
        );
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(buf)
    }
}

/// Whether `path` is the root of a mount (something is mounted on it).
///
/// One `statx`: the kernel reports the mount-root attribute (Linux 5.8+);
/// on older kernels, the mount ids of the path and its parent are compared.
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    let st = statx(path, libc::STATX_MNT_ID)?;
    if st.stx_attributes_mask & root != 0 {
        return Ok(st.stx_attributes & root != 0);
    }
    if path == Path::new("/") {
        return Ok(true);
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    Ok(st.stx_mnt_id != statx(parent, libc::STATX_MNT_ID)?.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(
            unescape_mountinfo("/a\\040b\\011c\\134d\\012e"),
            Path::new("/a b\tc\\d\ne")
        );
        assert_eq!(unescape_mountinfo("/x\\9y\\"), Path::new("/x\\9y\\"));
    }

    #[test]
    fn mount_points_are_told_from_plain_directories() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        assert!(is_mount_point(Path::new("/proc")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(dir.path()).unwrap());
        assert_eq!(
            is_mount_point(&dir.path().join("absent"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_mount_busy_for_a_moment_unmounts_and_one_kept_busy_fails_busy() {
        enter_private_mount_namespace().expect("a private mount namespace");
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::create_dir(&target).unwrap();
        let tmpfs = |t: &Path| {
            nix::mount::mount(
                Some("tmpfs"),
                t,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .unwrap()
        };

        tmpfs(&target);
        let held = std::fs::File::create(target.join("held")).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(held);
        });
        assert!(unmount(&target).unwrap(), "unmounted once let go");
        release.join().unwrap();
        assert!(!is_mount_point(&target).unwrap());
        assert!(!unmount(&target).unwrap(), "nothing mounted is Ok(false)");

        tmpfs(&target);
        let held = std::fs::File::create(target.join("held")).unwrap();
        let err = unmount(&target).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBUSY));
        assert!(is_mount_point(&target).unwrap(), "never detached lazily");
        drop(held);
        assert!(unmount(&target).unwrap());
    }
}
