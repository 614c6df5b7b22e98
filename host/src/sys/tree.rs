//! Whole-tree operations beneath a capability directory: copy, usage, statvfs.
//!
//! Everything goes through `cap_std::fs::Dir`, so no path (and no symlink met
//! on the way) can lead outside the root. Symlinks are copied as links and
//! never followed.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use cap_std::fs::{Dir, MetadataExt};

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
    let frag = s.fragment_size();
    Ok(FsStats {
        total_bytes: s.blocks() * frag,
        free_bytes: s.blocks_free() * frag,
        available_bytes: s.blocks_available() * frag,
        total_inodes: s.files(),
        free_inodes: s.files_free(),
    })
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
    let mut bytes = meta.blocks() * 512;
    let mut inodes = 1;
    if meta.is_dir() {
        let dir = root.open_dir(path)?;
        for entry in dir.entries()? {
            let entry = entry?;
            let (b, i) = usage(&dir, Path::new(&entry.file_name()))?;
            bytes += b;
            inodes += i;
        }
    }
    Ok((bytes, inodes))
}

/// Copies the file, link or directory tree at `from` to `to` (which must not exist).
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
        root.symlink_contents(link, to)
    } else if ft.is_dir() {
        root.create_dir(to)?;
        root.set_permissions(to, meta.permissions())?;
        let src = root.open_dir(from)?;
        let dst = root.open_dir(to)?;
        for entry in src.entries()? {
            let name = entry?.file_name();
            copy_tree_between(&src, &dst, Path::new(&name))?;
        }
        Ok(())
    } else if ft.is_file() {
        copy_file(root, from, root, to)
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} is not a file, directory or symlink", from.display()),
        ))
    }
}

/// Copies `name` from directory `src` into directory `dst`.
fn copy_tree_between(src: &Dir, dst: &Dir, name: &Path) -> io::Result<()> {
    let meta = src.symlink_metadata(name)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        dst.symlink_contents(src.read_link_contents(name)?, name)
    } else if ft.is_dir() {
        dst.create_dir(name)?;
        dst.set_permissions(name, meta.permissions())?;
        let s = src.open_dir(name)?;
        let d = dst.open_dir(name)?;
        for entry in s.entries()? {
            copy_tree_between(&s, &d, Path::new(&entry?.file_name()))?;
        }
        Ok(())
    } else if ft.is_file() {
        copy_file(src, name, dst, name)
    } else {
        Ok(()) // sockets, fifos and devices are not volume data
    }
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
