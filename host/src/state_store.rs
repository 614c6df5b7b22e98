//! Durable per-driver key-value state, kept in one embedded ACID store (redb).
//!
//! Each write is its own committed transaction, so an acknowledged write
//! survives a crash. Each driver sees only its own keys; the bytes it holds
//! (keys plus values) are counted in the same transaction as the write, so
//! the quota cannot be raced past.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const ENTRIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("entries");
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");

/// Longest key a driver may use.
pub const MAX_KEY_BYTES: usize = 1024;

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
    /// fsync'd before the call returns: a crash loses nothing acknowledged.
    Durable,
    /// Persisted with the next durable write (or clean shutdown); for host
    /// records that kubelet's own retries rebuild after a crash.
    Relaxed,
}

/// The host's state database, shared by every driver.
pub struct StateStore {
    db: Database,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateStore")
    }
}

impl StateStore {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Store(e.to_string()))?;
        }
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(ENTRIES)?;
        tx.open_table(USAGE)?;
        tx.commit()?;
        Ok(Self { db })
    }

    /// One value.
    pub fn get(&self, driver: &str, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        check_key(key)?;
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        Ok(table.get((driver, key))?.map(|v| v.value().to_vec()))
    }

    /// Keys and values under a prefix, in key order.
    pub fn list(&self, driver: &str, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for item in table.range((driver, prefix)..)? {
            let (k, v) = item?;
            let (d, key) = k.value();
            if d != driver || !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_owned(), v.value().to_vec()));
        }
        Ok(out)
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
        let mut tx = self.db.begin_write()?;
        if persist == Persist::Relaxed {
            tx.set_durability(redb::Durability::None)
                .map_err(|e| StateError::Store(e.to_string()))?;
        }
        {
            let mut table = tx.open_table(ENTRIES)?;
            let mut usage = tx.open_table(USAGE)?;
            let current = table.get((driver, key))?.map(|v| v.value().to_vec());
            if let Some(expected) = expected {
                if current.as_deref() != expected {
                    return Ok(false);
                }
            }
            let entry_size = |v: &[u8]| (key.len() + v.len()) as u64;
            let used = usage.get(driver)?.map_or(0, |v| v.value());
            let would_hold =
                used - current.as_deref().map_or(0, entry_size) + new.map_or(0, entry_size);
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
        }
        tx.commit()?;
        Ok(true)
    }

    /// Bytes a driver holds.
    pub fn usage(&self, driver: &str) -> Result<u64, StateError> {
        let tx = self.db.begin_read()?;
        let usage = tx.open_table(USAGE)?;
        Ok(usage.get(driver)?.map_or(0, |v| v.value()))
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
}
