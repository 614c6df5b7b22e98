//! Whole-tree operations beneath a capability directory: copy, usage,
//! removal, statvfs.
//!
//! Everything goes through `cap_std::fs::Dir`, so no path (and no symlink met
//! on the way) can lead outside the root. Symlinks are copied as links and
//! never followed.
//!
//! The trees are a pod's to shape, so every walk is iterative (an explicit
//! stack, never recursion: a deep tree cannot overflow the host's stack) and
//! holds one directory descriptor per level (two for a copy), at most
//! [`MAX_DEPTH`] levels: a deeper tree is an error for usage and copy, and
//! removal flattens it as it goes, so any tree a pod can make can be removed.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use cap_std::fs::{Dir, MetadataExt};

/// Deepest nesting a walk descends into. Bounds the descriptors one walk
/// holds (one per level, two for a copy).
pub const MAX_DEPTH: usize = 64;

fn too_deep(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} holds directories nested more than {MAX_DEPTH} deep, past what the host walks",
        path.display()
    ))
}

/// The names in `dir`, read in full so the listing's descriptor is closed
/// before the walk goes deeper.
fn names(dir: &Dir) -> io::Result<Vec<OsString>> {
    dir.entries()?.map(|e| e.map(|e| e.file_name())).collect()
}

/// Ignores "not found": an entry a pod removed while the walk ran.
fn gone_is_ok<T: Default>(r: io::Result<T>) -> io::Result<T> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        r => r,
    }
}

/// Filesystem statistics of the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    /// Size of the filesystem.
    pub total_bytes: u64,
    /// Free bytes.
    pub free_bytes: u64,
    /// Free bytes an unprivileged user may use.
    pub available_bytes: u64,
    /// Inodes in all.
    pub total_inodes: u64,
    /// Free inodes.
    pub free_inodes: u64,
}

/// statvfs of the filesystem holding `path` beneath `root`.
pub fn statvfs(root: &Dir, path: &Path) -> io::Result<FsStats> {
    let dir = open_dir_or_root(root, path)?;
    let s = nix::sys::statvfs::fstatvfs(dir.as_fd()).map_err(io::Error::from)?;
    Ok(FsStats::from(&s))
}

impl From<&nix::sys::statvfs::Statvfs> for FsStats {
    fn from(s: &nix::sys::statvfs::Statvfs) -> Self {
        let frag = s.fragment_size();
        FsStats {
            total_bytes: s.blocks() * frag,
            free_bytes: s.blocks_free() * frag,
            available_bytes: s.blocks_available() * frag,
            total_inodes: s.files(),
            free_inodes: s.files_free(),
        }
    }
}

fn open_dir_or_root(root: &Dir, path: &Path) -> io::Result<Dir> {
    if path.as_os_str().is_empty() || path == Path::new(".") {
        root.try_clone()
    } else {
        root.open_dir(path)
    }
}

/// Bytes allocated and inodes used by `path` and everything beneath it.
pub fn usage(root: &Dir, path: &Path) -> io::Result<(u64, u64)> {
    let meta = root.symlink_metadata(path)?;
    let (mut bytes, mut inodes) = (meta.blocks() * 512, 1);
    if !meta.is_dir() {
        return Ok((bytes, inodes));
    }
    let top = open_dir_or_root(root, path)?;
    let mut stack = vec![(names(&top)?, top)];
    loop {
        let depth = stack.len();
        let Some((pending, dir)) = stack.last_mut() else {
            break;
        };
        let Some(name) = pending.pop() else {
            stack.pop();
            continue;
        };
        let Some(meta) = gone_is_ok(dir.symlink_metadata(&name).map(Some))? else {
            continue;
        };
        bytes += meta.blocks() * 512;
        inodes += 1;
        if meta.is_dir() {
            if depth >= MAX_DEPTH {
                return Err(too_deep(path));
            }
            let Some(sub) = gone_is_ok(dir.open_dir(&name).map(Some))? else {
                continue;
            };
            stack.push((names(&sub)?, sub));
        }
    }
    Ok((bytes, inodes))
}

/// Removes the file, link or directory tree at `path`; nothing there is success.
///
/// A directory nested [`MAX_DEPTH`] deep is moved up into the top of the
/// tree being removed (a rename within the same directory tree) and removed
/// from there, so the descriptors held stay bounded however deep the tree.
pub fn remove_tree(root: &Dir, path: &Path) -> io::Result<()> {
    let Some(meta) = gone_is_ok(root.symlink_metadata(path).map(Some))? else {
        return Ok(());
    };
    if !meta.is_dir() {
        return gone_is_ok(root.remove_file(path));
    }
    let top = root.open_dir(path)?;
    // Each level: its directory, the names left to visit, its own name in its parent.
    let mut stack: Vec<(Dir, Vec<OsString>, OsString)> =
        vec![(top.try_clone()?, names(&top)?, OsString::new())];
    let mut flattened = 0u64;
    loop {
        let depth = stack.len();
        let Some((dir, pending, _)) = stack.last_mut() else {
            break;
        };
        let Some(name) = pending.pop() else {
            let (_, _, name) = stack.pop().expect("a level is on the stack");
            match stack.last() {
                Some((parent, _, _)) => gone_is_ok(parent.remove_dir(&name))?,
                None => gone_is_ok(root.remove_dir(path))?,
            }
            continue;
        };
        let Some(meta) = gone_is_ok(dir.symlink_metadata(&name).map(Some))? else {
            continue;
        };
        if !meta.is_dir() {
            gone_is_ok(dir.remove_file(&name))?;
            continue;
        }
        if depth < MAX_DEPTH {
            let Some(sub) = gone_is_ok(dir.open_dir(&name).map(Some))? else {
                continue;
            };
            let listed = names(&sub)?;
            stack.push((sub, listed, name));
            continue;
        }
        // Too deep to descend: move it up to the top level and take it from there.
        let moved = loop {
            flattened += 1;
            let fresh = OsString::from(format!(".wasmvol-remove-{flattened}"));
            match dir.rename(&name, &top, &fresh) {
                Ok(()) => break Some(fresh),
                Err(e) if e.kind() == io::ErrorKind::NotFound => break None,
                // A name the tree already uses (a non-empty directory or a file): next one.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::NotADirectory
                    ) || e.raw_os_error() == Some(libc::EEXIST) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        };
        if let Some(moved) = moved {
            stack[0].1.push(moved);
        }
    }
    Ok(())
}

/// Copies the file, link or directory tree at `from` to `to` (which must
/// not exist). A copy that fails part-way is removed: nothing half-made stays.
pub fn copy_tree(root: &Dir, from: &Path, to: &Path) -> io::Result<()> {
    let meta = root.symlink_metadata(from)?;
    if root.symlink_metadata(to).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists", to.display()),
        ));
    }
    let ft = meta.file_type();
    if ft.is_symlink() {
        let link = root.read_link_contents(from)?;
        return root.symlink_contents(link, to);
    }
    if ft.is_file() {
        let copied = copy_file(root, from, root, to);
        if copied.is_err() {
            let _ = root.remove_file(to);
        }
        return copied;
    }
    if !ft.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} is not a file, directory or symlink", from.display()),
        ));
    }
    root.create_dir(to)?;
    let copied = copy_dir_contents(root, from, to, meta.permissions());
    if copied.is_err() {
        let _ = remove_tree(root, to);
    }
    copied
}

/// Copies everything beneath directory `from` into the new directory `to`.
fn copy_dir_contents(
    root: &Dir,
    from: &Path,
    to: &Path,
    permissions: cap_std::fs::Permissions,
) -> io::Result<()> {
    root.set_permissions(to, permissions)?;
    let (src, dst) = (root.open_dir(from)?, root.open_dir(to)?);
    let mut stack = vec![(names(&src)?, src, dst)];
    loop {
        let depth = stack.len();
        let Some((pending, src, dst)) = stack.last_mut() else {
            break;
        };
        let Some(name) = pending.pop() else {
            stack.pop();
            continue;
        };
        let Some(meta) = gone_is_ok(src.symlink_metadata(&name).map(Some))? else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            dst.symlink_contents(src.read_link_contents(&name)?, &name)?;
        } else if ft.is_file() {
            copy_file(src, Path::new(&name), dst, Path::new(&name))?;
        } else if ft.is_dir() {
            if depth >= MAX_DEPTH {
                return Err(too_deep(from));
            }
            dst.create_dir(&name)?;
            dst.set_permissions(&name, meta.permissions())?;
            let (s, d) = (src.open_dir(&name)?, dst.open_dir(&name)?);
            stack.push((names(&s)?, s, d));
        }
        // Sockets, fifos and devices are not volume data.
    }
    Ok(())
}

/// Copies one file, keeping it sparse: a reflink where the filesystem
/// shares extents (xfs, btrfs), else only the data extents (SEEK_DATA /
/// SEEK_HOLE with copy_file_range), so a 1 GiB backing file holding 20 MiB
/// copies 20 MiB. Permissions are copied too.
fn copy_file(src_dir: &Dir, from: &Path, dst_dir: &Dir, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let src = src_dir.open(from)?.into_std();
    let meta = src.metadata()?;
    let mut opts = cap_std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    let dst = dst_dir.open_with(to, &opts)?.into_std();
    dst.set_permissions(meta.permissions())?;
    // A host killed here leaves a copy begun and not finished: what a
    // driver's retry must not take for a whole one.
    crate::fault::point("copying", "file");
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source fd as its argument.
    if unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) } == 0 {
        return Ok(());
    }
    let len = meta.len() as i64;
    let mut pos: i64 = 0;
    while pos < len {
        // SAFETY: lseek on an fd we own.
        let data = unsafe { libc::lseek(src.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let (mut off_in, mut off_out) = (data, data);
        while off_in < hole {
            // SAFETY: offsets point at live locals; fds are ours.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    (hole - off_in) as usize,
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
        }
        pos = hole;
    }
    dst.set_len(len as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    #[test]
    fn copies_trees_with_links_as_links_and_counts_usage() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        root.create_dir_all("a/b").unwrap();
        root.write("a/b/f", b"hello").unwrap();
        root.symlink_contents("/etc/passwd", "a/link").unwrap();
        copy_tree(&root, Path::new("a"), Path::new("c")).unwrap();
        assert_eq!(root.read("c/b/f").unwrap(), b"hello");
        assert_eq!(
            root.read_link_contents("c/link").unwrap(),
            Path::new("/etc/passwd")
        );
        let (_, inodes) = usage(&root, Path::new("c")).unwrap();
        assert_eq!(inodes, 4);
        assert!(copy_tree(&root, Path::new("a"), Path::new("c")).is_err());
        assert!(statvfs(&root, Path::new("c")).unwrap().total_bytes > 0);
    }

    /// A chain of `depth` nested directories `d/d/d/...` beneath `at`, made
    /// one level at a time as a pod would (no path ever gets long).
    fn nest(root: &Dir, at: &str, depth: usize) {
        root.create_dir(at).unwrap();
        let mut dir = root.open_dir(at).unwrap();
        for _ in 0..depth {
            dir.create_dir("d").unwrap();
            dir.write("f", b"x").unwrap();
            dir = dir.open_dir("d").unwrap();
        }
    }

    #[test]
    fn a_tree_deeper_than_the_bound_is_an_error_not_a_crash_and_is_still_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        // Deep enough that a recursive walk overflowed the host's stack.
        nest(&root, "deep", 10_000);
        let e = usage(&root, Path::new("deep")).unwrap_err();
        assert!(e.to_string().contains("nested more than"), "{e}");
        let e = copy_tree(&root, Path::new("deep"), Path::new("copy")).unwrap_err();
        assert!(e.to_string().contains("nested more than"), "{e}");
        assert!(!root.exists("copy"), "a failed copy leaves nothing behind");
        remove_tree(&root, Path::new("deep")).unwrap();
        assert!(!root.exists("deep"));
        assert_eq!(names(&root).unwrap(), Vec::<OsString>::new());
        // Within the bound, everything works and is counted.
        nest(&root, "ok", MAX_DEPTH - 1);
        assert_eq!(
            usage(&root, Path::new("ok")).unwrap().1,
            1 + 2 * (MAX_DEPTH as u64 - 1)
        );
        copy_tree(&root, Path::new("ok"), Path::new("ok2")).unwrap();
        assert_eq!(
            usage(&root, Path::new("ok2")).unwrap().1,
            1 + 2 * (MAX_DEPTH as u64 - 1)
        );
        remove_tree(&root, Path::new("ok")).unwrap();
        remove_tree(&root, Path::new("ok2")).unwrap();
        remove_tree(&root, Path::new("absent")).unwrap();
    }

    #[test]
    fn removal_does_not_follow_symlinks_and_takes_files_too() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        root.create_dir_all("keep").unwrap();
        root.write("keep/precious", b"p").unwrap();
        root.create_dir_all("gone/sub").unwrap();
        root.symlink_contents("../../keep", "gone/sub/link")
            .unwrap();
        root.write("file", b"f").unwrap();
        remove_tree(&root, Path::new("gone")).unwrap();
        remove_tree(&root, Path::new("file")).unwrap();
        assert!(!root.exists("gone") && !root.exists("file"));
        assert_eq!(root.read("keep/precious").unwrap(), b"p");
    }

    #[test]
    fn sparse_files_stay_sparse() {
        use std::io::{Seek, SeekFrom, Write};
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        let mut f = std::fs::File::create(tmp.path().join("big.img")).unwrap();
        f.set_len(256 << 20).unwrap();
        f.seek(SeekFrom::Start(100 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        drop(f);
        copy_tree(&root, Path::new("big.img"), Path::new("copy.img")).unwrap();
        let meta = root.metadata("copy.img").unwrap();
        assert_eq!(meta.len(), 256 << 20);
        assert!(
            meta.blocks() * 512 < 16 << 20,
            "copied {} bytes",
            meta.blocks() * 512
        );
        let copy = std::fs::read(tmp.path().join("copy.img")).unwrap();
        assert_eq!(&copy[100 << 20..(100 << 20) + 6], b"middle");
    }
}
