//! Copying one block device onto another, byte for byte.
//!
//! Both are opened with `O_EXCL`, which for a block device the kernel
//! grants only when nothing has it mounted or claimed, so a volume in use
//! is refused rather than copied torn. The copy stops at a deadline, and
//! the destination is flushed before success is reported.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

/// Bytes moved per read and write.
const CHUNK: usize = 1 << 20;

/// Why a copy did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A device is mounted or claimed by someone else.
    #[error("{0} is in use (mounted or held open exclusively)")]
    InUse(String),
    /// The destination is smaller than the source.
    #[error("the destination holds {dest} bytes, the source {from} bytes")]
    TooSmall {
        /// Source size in bytes.
        from: u64,
        /// Destination size in bytes.
        dest: u64,
    },
    /// The deadline passed first.
    #[error("stopped at the deadline after {done} of {total} bytes")]
    Deadline {
        /// Bytes copied.
        done: u64,
        /// Bytes to copy.
        total: u64,
    },
    /// Reading, writing or flushing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn open_exclusive(node: &Path, write: bool) -> Result<File, CopyError> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
        .open(node)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => CopyError::InUse(node.display().to_string()),
            _ => CopyError::Io(e),
        })
}

fn size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::End(0))
}

/// Copies all of `source` onto the start of `dest`; returns the bytes copied.
pub fn copy(source: &Path, dest: &Path, deadline: Instant) -> Result<u64, CopyError> {
    let from = open_exclusive(source, false)?;
    let to = open_exclusive(dest, true)?;
    let (total, room) = (size(&from)?, size(&to)?);
    if room < total {
        return Err(CopyError::TooSmall {
            from: total,
            dest: room,
        });
    }
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < total {
        if Instant::now() >= deadline {
            return Err(CopyError::Deadline { done, total });
        }
        let n = (total - done).min(CHUNK as u64) as usize;
        from.read_exact_at(&mut buf[..n], done)?;
        to.write_all_at(&buf[..n], done)?;
        done += n as u64;
    }
    to.sync_all()?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_byte_is_copied_and_a_short_destination_or_deadline_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, small) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("small"),
        );
        let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &data).unwrap();
        std::fs::write(&b, vec![0xffu8; data.len() + 7]).unwrap();
        std::fs::write(&small, vec![0u8; 10]).unwrap();
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(copy(&a, &b, later).unwrap(), data.len() as u64);
        let got = std::fs::read(&b).unwrap();
        assert_eq!(&got[..data.len()], &data[..]);
        assert_eq!(
            &got[data.len()..],
            &[0xff; 7],
            "nothing past the source is touched"
        );
        assert!(matches!(
            copy(&a, &small, later),
            Err(CopyError::TooSmall { .. })
        ));
        assert!(matches!(
            copy(&a, &b, Instant::now()),
            Err(CopyError::Deadline { done: 0, .. })
        ));
    }
}
