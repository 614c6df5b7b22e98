//! Closing descriptors off the request path.
//!
//! A removed directory keeps its inode while anything holds it open; the
//! kernel frees the inode and its blocks at the last close. On a filesystem
//! that discards freed blocks synchronously (ext4 without a journal,
//! mounted with `discard`, as some node root disks are) that free waits for
//! the disk's TRIM, tens of µs. Whoever removes a path while holding it open
//! makes the removal itself quick (the name is gone when `rmdir` returns)
//! and can hand the last reference here, where one background thread closes
//! it: the caller answers at once, and the disk work happens beside it.

use std::os::fd::OwnedFd;
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;

/// More than this many waiting descriptors and the caller closes its own:
/// a stalled disk must not grow the queue (and the process's open files)
/// without bound.
const MAX_WAITING: usize = 1024;

/// After closing a batch the thread lingers this long before it looks
/// again, so a burst of removals costs one wake-up per interval, not one
/// per removal.
const LINGER: Duration = Duration::from_millis(1);

struct Closer {
    waiting: Mutex<Vec<OwnedFd>>,
    thread: Thread,
}

/// The closing thread, started on first use; `None` if it could not start,
/// and then every descriptor is closed by its caller.
fn closer() -> Option<&'static Closer> {
    static CLOSER: OnceLock<Option<Closer>> = OnceLock::new();
    CLOSER
        .get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("wasmvol-close".into())
                .spawn(close_waiting);
            match spawned {
                Ok(handle) => Some(Closer {
                    waiting: Mutex::new(Vec::new()),
                    thread: handle.thread().clone(),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "no descriptor-closing thread; closing in place");
                    None
                }
            }
        })
        .as_ref()
}

/// The closing thread's loop.
fn close_waiting() {
    // Started from `closer()`'s initialiser: this call waits for that
    // initialiser to return (`get_or_init` blocks other callers) and finds it set.
    let Some(closer) = closer() else { return };
    loop {
        let batch = std::mem::take(&mut *lock(&closer.waiting));
        if batch.is_empty() {
            std::thread::park();
        } else {
            drop(batch);
            std::thread::sleep(LINGER);
        }
    }
}

fn lock(waiting: &Mutex<Vec<OwnedFd>>) -> std::sync::MutexGuard<'_, Vec<OwnedFd>> {
    // A panic while holding the lock cannot leave the Vec inconsistent.
    waiting.lock().unwrap_or_else(|e| e.into_inner())
}

/// Closes `fd` soon, on a background thread, instead of now.
pub fn defer_close(fd: OwnedFd) {
    let Some(closer) = closer() else {
        return drop(fd);
    };
    let mut waiting = lock(&closer.waiting);
    if waiting.len() >= MAX_WAITING {
        drop(waiting);
        drop(fd);
        return;
    }
    waiting.push(fd);
    drop(waiting);
    // Cheap when the thread is not parked: no system call.
    closer.thread.unpark();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    /// What /proc says descriptor `fd` of this process points at, if open.
    fn fd_target(fd: i32) -> Option<String> {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .ok()
            .map(|p| p.display().to_string())
    }

    #[test]
    fn a_deferred_descriptor_is_closed_soon_after() {
        let dir = tempfile::tempdir().unwrap();
        let removed = dir.path().join("removed");
        std::fs::create_dir(&removed).unwrap();
        let fd: OwnedFd = std::fs::File::open(&removed).unwrap().into();
        let raw = fd.as_raw_fd();
        std::fs::remove_dir(&removed).unwrap();
        assert!(!removed.exists(), "the name goes with rmdir");
        let deleted = format!("{} (deleted)", removed.display());
        assert_eq!(fd_target(raw).as_deref(), Some(deleted.as_str()));
        defer_close(fd);
        let started = Instant::now();
        // The number may be reused by another test's open; what matters is
        // that it no longer names the removed directory.
        while fd_target(raw).as_deref() == Some(deleted.as_str()) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the deferred descriptor is still open after 5 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
