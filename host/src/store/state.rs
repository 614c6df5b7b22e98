//! Durable per-driver key-value state, kept in one embedded ACID store (redb).
//!
//! A durable write is its own committed transaction, so an acknowledged
//! write survives a crash. Each driver sees only its own keys; the bytes it
//! holds (keys plus values) are counted in the same transaction as the
//! write, so the quota cannot be raced past.
//!
//! Relaxed writes (host records that kubelet's retries rebuild) are held in
//! memory, visible to every read at once, and committed together by a
//! background thread within [`FLUSH_DELAY`]: a busy node pays for one
//! transaction every few milliseconds instead of one per record.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("entries");
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");

/// Longest key a driver may use.
pub const MAX_KEY_BYTES: usize = 1024;

/// How long relaxed writes may wait in memory before they are committed.
pub const FLUSH_DELAY: Duration = Duration::from_millis(10);

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The write would take the driver past its quota.
    #[error("state quota of {quota} bytes exceeded (would hold {would_hold})")]
    Quota {
        /// The quota.
        quota: u64,
        /// What the driver would hold after the write.
        would_hold: u64,
    },
    #[error("key is empty or longer than {MAX_KEY_BYTES} bytes")]
    /// The key is empty or too long.
    BadKey,
    #[error("state store: {0}")]
    /// The store itself failed.
    Store(String),
}

macro_rules! store_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self { StateError::Store(e.to_string()) }
        }
    )*};
}
store_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// How hard a write must reach the disk before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// Committed and fsync'd before the call returns: a crash loses nothing acknowledged.
    Durable,
    /// Visible at once, committed (and fsync'd) in the background within
    /// [`FLUSH_DELAY`], or at a clean shutdown; a crash may lose the last
    /// few milliseconds. Only for unconditional writes of records that
    /// kubelet's own retries rebuild (host records): each must fit the
    /// quota on its own, and is counted in the usage once committed.
    Relaxed,
}

/// A relaxed write: its sequence number and its value (`None` deletes).
type PendingWrite = (u64, Option<Vec<u8>>);

/// Relaxed writes not yet committed, by driver, then key (looked up by
/// `&str` with no allocation: reads pass here on every call).
#[derive(Default)]
struct Pending {
    by_driver: BTreeMap<String, BTreeMap<String, PendingWrite>>,
    next_seq: u64,
    stop: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.by_driver.is_empty()
    }

    fn get(&self, driver: &str, key: &str) -> Option<&PendingWrite> {
        self.by_driver.get(driver)?.get(key)
    }

    fn insert(&mut self, driver: &str, key: &str, value: Option<Vec<u8>>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let write = (key.to_owned(), (seq, value));
        match self.by_driver.get_mut(driver) {
            Some(keys) => {
                keys.insert(write.0, write.1);
            }
            None => {
                self.by_driver
                    .insert(driver.to_owned(), BTreeMap::from([write]));
            }
        }
    }

    /// Forgets a relaxed write once committed, unless a newer one replaced it.
    fn forget(&mut self, driver: &str, key: &str, seq: u64) {
        let Some(keys) = self.by_driver.get_mut(driver) else {
            return;
        };
        if keys.get(key).is_some_and(|(s, _)| *s == seq) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_driver.remove(driver);
            }
        }
    }
}

struct Shared {
    db: Database,
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The host's state database, shared by every driver.
pub struct StateStore {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateStore")
    }
}

impl StateStore {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Some(dir) = path.parent() {
            // Made root-only when the host makes it (the admin socket lives there too).
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StateError::Store(e.to_string()))?;
        }
        let db = Database::create(path)?;
        // Driver state may hold whatever drivers keep (names, paths,
        // parameters): readable by root alone, as the audit log is.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StateError::Store(format!("{}: {e}", path.display())))?;
        let tx = db.begin_write()?;
        tx.open_table(ENTRIES)?;
        tx.open_table(USAGE)?;
        tx.commit()?;
        let shared = Arc::new(Shared {
            db,
            pending: Mutex::default(),
            wake: Condvar::new(),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("wasmvol-state-flush".into())
                .spawn(move || flush_loop(&shared))
                .map_err(|e| StateError::Store(format!("starting the flush thread: {e}")))?
        };
        Ok(Self {
            shared,
            flusher: Some(flusher),
        })
    }

    /// One value.
    pub fn get(&self, driver: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        if let Some((_, v)) = self.shared.pending().get(driver, key) {
            return Ok(v.clone());
        }
        let tx = self.shared.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        Ok(table.get((driver, key))?.map(|v| v.value().to_vec()))
    }

    /// Keys and values under a prefix, in key order.
    pub fn list(&self, driver: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let mut out = BTreeMap::new();
        // Held across the store read: the flusher forgets a relaxed write
        // only under this lock, after committing it, so every write is seen
        // either in memory here or (committed before) in the store read.
        let pending = self.shared.pending();
        {
            let tx = self.shared.db.begin_read()?;
            let table = tx.open_table(ENTRIES)?;
            for item in table.range((driver, prefix)..)? {
                let (k, v) = item?;
                let (d, key) = k.value();
                if d != driver || !key.starts_with(prefix) {
                    break;
                }
                out.insert(key.to_owned(), v.value().to_vec());
            }
        }
        let keys = pending.by_driver.get(driver).into_iter().flat_map(|keys| {
            keys.range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
        });
        for (key, (_, v)) in keys {
            if !key.starts_with(prefix) {
                break;
            }
            match v {
                Some(v) => out.insert(key.clone(), v.clone()),
                None => out.remove(key),
            };
        }
        Ok(out.into_iter().collect())
    }

    /// Sets or deletes (`None`) a key durably, within `quota` bytes.
    pub fn put(
        &self,
        driver: &str,
        key: &str,
        value: Option<&[u8]>,
        quota: u64,
    ) -> Result<(), StateError> {
        self.write(driver, key, None, value, quota, Persist::Durable)
            .map(|_| ())
    }

    /// Writes `new` only if the key holds `expected` (`Some(None)`: must be
    /// absent; `None`: no condition). Returns whether it wrote.
    pub fn swap(
        &self,
        driver: &str,
        key: &str,
        expected: Option<Option<&[u8]>>,
        new: Option<&[u8]>,
        quota: u64,
    ) -> Result<bool, StateError> {
        self.write(driver, key, expected, new, quota, Persist::Durable)
    }

    /// The one write path: conditional on `expected`, within `quota`, persisted as asked.
    pub fn write(
        &self,
        driver: &str,
        key: &str,
        expected: Option<Option<&[u8]>>,
        new: Option<&[u8]>,
        quota: u64,
        persist: Persist,
    ) -> Result<bool, StateError> {
        check_key(key)?;
        if persist == Persist::Relaxed {
            if expected.is_some() {
                return Err(StateError::Store(
                    "a conditional write must be durable".into(),
                ));
            }
            let size = new.map_or(0, |v| (key.len() + v.len()) as u64);
            if size > quota {
                return Err(StateError::Quota {
                    quota,
                    would_hold: size,
                });
            }
            let mut pending = self.shared.pending();
            let was_empty = pending.is_empty();
            pending.insert(driver, key, new.map(<[u8]>::to_vec));
            drop(pending);
            // The flusher sleeps only on an empty map: wake it only then.
            if was_empty {
                self.shared.wake.notify_one();
            }
            return Ok(true);
        }
        let tx = self.shared.db.begin_write()?;
        // Write transactions are exclusive, so the flusher cannot commit this
        // key's relaxed value after us: once we commit, ours supersedes it.
        let relaxed = self.shared.pending().get(driver, key).cloned();
        let wrote = apply(&tx, driver, key, expected, relaxed.as_ref(), new, quota)?;
        if wrote {
            crate::fault::point("commit", driver);
            tx.commit()?;
            crate::fault::point("committed", driver);
            if let Some((seq, _)) = relaxed {
                // A relaxed write that came in meanwhile is newer: it stays.
                self.shared.pending().forget(driver, key, seq);
            }
        }
        Ok(wrote)
    }

    /// Bytes a driver holds (relaxed writes count once committed).
    pub fn usage(&self, driver: &str) -> Result<u64, StateError> {
        let tx = self.shared.db.begin_read()?;
        let usage = tx.open_table(USAGE)?;
        Ok(usage.get(driver)?.map_or(0, |v| v.value()))
    }

    /// Commits every relaxed write now (the flusher does this on its own).
    pub fn flush(&self) -> Result<(), StateError> {
        flush(&self.shared)
    }
}

impl Drop for StateStore {
    fn drop(&mut self) {
        self.shared.pending().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

/// One write inside `tx`: checks `expected` against the current value (a
/// relaxed value not yet committed counts as current), then writes within
/// `quota`. Returns whether it wrote; the caller commits.
fn apply(
    tx: &WriteTransaction,
    driver: &str,
    key: &str,
    expected: Option<Option<&[u8]>>,
    relaxed: Option<&PendingWrite>,
    new: Option<&[u8]>,
    quota: u64,
) -> Result<bool, StateError> {
    let mut table = tx.open_table(ENTRIES)?;
    let mut usage = tx.open_table(USAGE)?;
    let stored = table.get((driver, key))?.map(|v| v.value().to_vec());
    let current = match relaxed {
        Some((_, v)) => v.as_deref(),
        None => stored.as_deref(),
    };
    if let Some(expected) = expected {
        if current != expected {
            return Ok(false);
        }
    }
    let entry_size = |v: &[u8]| (key.len() + v.len()) as u64;
    let used = usage.get(driver)?.map_or(0, |v| v.value());
    let would_hold = used - stored.as_deref().map_or(0, entry_size) + new.map_or(0, entry_size);
    if would_hold > quota && would_hold > used {
        return Err(StateError::Quota { quota, would_hold });
    }
    match new {
        Some(v) => {
            table.insert((driver, key), v)?;
        }
        None => {
            table.remove((driver, key))?;
        }
    }
    usage.insert(driver, would_hold)?;
    Ok(true)
}

/// Commits the relaxed writes pending now in one transaction, then forgets
/// those not overwritten meanwhile (reads see them in memory until then).
fn flush(shared: &Shared) -> Result<(), StateError> {
    if shared.pending().is_empty() {
        return Ok(());
    }
    let tx = shared.db.begin_write()?;
    let batch = shared.pending().by_driver.clone();
    for (driver, keys) in &batch {
        for (key, (_, value)) in keys {
            apply(&tx, driver, key, None, None, value.as_deref(), u64::MAX)?;
        }
    }
    tx.commit()?;
    let mut pending = shared.pending();
    for (driver, keys) in &batch {
        for (key, (seq, _)) in keys {
            pending.forget(driver, key, *seq);
        }
    }
    Ok(())
}

/// The flusher: waits for relaxed writes, lets a batch gather for
/// [`FLUSH_DELAY`], commits it; at stop, commits what is left.
fn flush_loop(shared: &Shared) {
    loop {
        let stop = {
            let mut pending = shared.pending();
            while pending.is_empty() && !pending.stop {
                pending = shared.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
            }
            pending.stop
        };
        if !stop {
            std::thread::sleep(FLUSH_DELAY);
        }
        if let Err(e) = flush(shared) {
            tracing::error!(error = %e, "committing relaxed host records failed; retrying");
            if !stop {
                std::thread::sleep(FLUSH_DELAY * 10);
            }
        }
        if stop {
            return;
        }
    }
}

fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StateError::BadKey);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(&dir.path().join("state.redb")).unwrap();
        (dir, s)
    }

    #[test]
    fn the_store_and_the_directory_it_makes_are_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/state.redb");
        drop(StateStore::open(&path).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // A store a looser host left behind is tightened when opened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(StateStore::open(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn drivers_are_isolated_and_lists_stay_in_prefix() {
        let (_d, s) = store();
        s.put("a", "vol/1", Some(b"x"), 100).unwrap();
        s.put("a", "vol/2", Some(b"y"), 100).unwrap();
        s.put("a", "snap/1", Some(b"z"), 100).unwrap();
        s.put("b", "vol/3", Some(b"w"), 100).unwrap();
        let keys: Vec<_> = s
            .list("a", "vol/")
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(keys, ["vol/1", "vol/2"]);
        assert_eq!(s.get("b", "vol/1").unwrap(), None);
    }

    #[test]
    fn quota_counts_keys_and_values_and_frees_on_delete() {
        let (_d, s) = store();
        s.put("a", "k", Some(&[0; 9]), 10).unwrap();
        assert_eq!(s.usage("a").unwrap(), 10);
        assert!(matches!(
            s.put("a", "j", Some(b"1"), 10),
            Err(StateError::Quota { .. })
        ));
        s.put("a", "k", None, 10).unwrap();
        assert_eq!(s.usage("a").unwrap(), 0);
        s.put("a", "j", Some(b"1"), 10).unwrap();
    }

    #[test]
    fn compare_and_swap_checks_the_current_value() {
        let (_d, s) = store();
        assert!(s.swap("a", "k", Some(None), Some(b"1"), 100).unwrap());
        assert!(!s.swap("a", "k", Some(None), Some(b"2"), 100).unwrap());
        assert!(s.swap("a", "k", Some(Some(b"1")), Some(b"2"), 100).unwrap());
        assert_eq!(s.get("a", "k").unwrap().as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        StateStore::open(&path)
            .unwrap()
            .put("a", "k", Some(b"v"), 100)
            .unwrap();
        let s = StateStore::open(&path).unwrap();
        assert_eq!(s.get("a", "k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(s.usage("a").unwrap(), 2);
    }

    #[test]
    fn relaxed_writes_are_read_at_once_and_committed_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let s = StateStore::open(&path).unwrap();
        s.put("a", "r/gone", Some(b"old"), 100).unwrap();
        s.write("a", "r/1", None, Some(b"x"), 100, Persist::Relaxed)
            .unwrap();
        s.write("a", "r/gone", None, None, 100, Persist::Relaxed)
            .unwrap();
        assert_eq!(s.get("a", "r/1").unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(s.get("a", "r/gone").unwrap(), None);
        // Other drivers' and other prefixes' relaxed writes stay out of a listing.
        s.write("b", "r/2", None, Some(b"y"), 100, Persist::Relaxed)
            .unwrap();
        s.write("a", "r0", None, Some(b"z"), 100, Persist::Relaxed)
            .unwrap();
        let keys: Vec<_> = s
            .list("a", "r/")
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(keys, ["r/1"]);
        // Committed by the flusher within its delay, without being asked.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !s.shared.pending().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never committed");
            std::thread::sleep(FLUSH_DELAY);
        }
        assert_eq!(s.usage("a").unwrap(), 4 + 3);
        drop(s);
        let s = StateStore::open(&path).unwrap();
        assert_eq!(s.get("a", "r/1").unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(s.get("a", "r/gone").unwrap(), None);
    }

    /// A listing taken while the flusher commits a relaxed delete must not
    /// show the deleted key: read from the store before the flusher
    /// committed, then from memory after it forgot the write, it once did
    /// (a single-writer publish was refused for a target just unpublished).
    #[test]
    fn a_listing_never_sees_a_relaxed_delete_undone_by_the_flush() {
        let (_d, s) = store();
        for _ in 0..60 {
            s.write("a", "r/k", None, Some(b"v"), 100, Persist::Relaxed)
                .unwrap();
            s.flush().unwrap();
            s.write("a", "r/k", None, None, 100, Persist::Relaxed)
                .unwrap();
            // List over and over while the flusher commits the delete.
            let until = std::time::Instant::now() + 3 * FLUSH_DELAY;
            while std::time::Instant::now() < until {
                assert!(
                    s.list("a", "r/").unwrap().is_empty(),
                    "a deleted key listed"
                );
            }
        }
    }

    #[test]
    fn a_clean_shutdown_commits_what_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let s = StateStore::open(&path).unwrap();
        for i in 0..100 {
            let key = format!("k{i}");
            s.write("a", &key, None, Some(b"v"), 1000, Persist::Relaxed)
                .unwrap();
        }
        drop(s);
        let s = StateStore::open(&path).unwrap();
        assert_eq!(s.list("a", "k").unwrap().len(), 100);
    }

    #[test]
    fn durable_writes_see_and_supersede_relaxed_ones() {
        let (_d, s) = store();
        s.write("a", "k", None, Some(b"1"), 100, Persist::Relaxed)
            .unwrap();
        // The uncommitted relaxed value is what a compare-and-swap compares with.
        assert!(!s.swap("a", "k", Some(None), Some(b"2"), 100).unwrap());
        assert_eq!(s.get("a", "k").unwrap().as_deref(), Some(&b"1"[..]));
        assert!(s.swap("a", "k", Some(Some(b"1")), Some(b"2"), 100).unwrap());
        s.flush().unwrap();
        assert_eq!(s.get("a", "k").unwrap().as_deref(), Some(&b"2"[..]));
        assert!(
            matches!(
                s.write("a", "k", Some(None), Some(b"3"), 100, Persist::Relaxed),
                Err(StateError::Store(_))
            ),
            "conditional writes are durable only"
        );
    }
}
