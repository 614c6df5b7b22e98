//! One operation at a time per volume (or snapshot, or name), for every
//! front end.
//!
//! CSI lets a plugin answer ABORTED when an operation on the same volume is
//! already in flight, and the CO retries ([`VolumeLocks::try_claim`]).
//! FlexVolume has no such answer: two kubelet execs on one volume wait
//! their turn ([`VolumeLocks::claim_within`]). Different volumes never wait
//! on each other.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Keys with an operation in flight.
#[derive(Debug, Default, Clone)]
pub struct VolumeLocks(Arc<(Mutex<HashSet<String>>, Condvar)>);

/// Held while an operation runs; frees its key on drop (and wakes waiters).
#[derive(Debug)]
pub struct Held {
    locks: VolumeLocks,
    key: String,
}

/// Another operation holds the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an operation on `{0}` is already in progress")]
pub struct Busy(pub String);

impl From<Busy> for tonic::Status {
    fn from(b: Busy) -> Self {
        tonic::Status::aborted(b.to_string())
    }
}

impl VolumeLocks {
    /// Claims `key` now, or answers [`Busy`] if it is taken.
    pub fn try_claim(&self, key: String) -> Result<Held, Busy> {
        let mut set = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(key.clone()) {
            return Err(Busy(key));
        }
        Ok(Held {
            locks: self.clone(),
            key,
        })
    }

    /// Claims `key`, waiting up to `wait` for the operation holding it to
    /// end; [`Busy`] if it is still held then. Blocks the thread.
    pub fn claim_within(&self, key: String, wait: Duration) -> Result<Held, Busy> {
        let until = Instant::now() + wait;
        let (lock, freed) = &*self.0;
        let mut set = lock.lock().unwrap_or_else(|p| p.into_inner());
        while set.contains(&key) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Busy(key));
            }
            set = freed
                .wait_timeout(set, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        set.insert(key.clone());
        Ok(Held {
            locks: self.clone(),
            key,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let (lock, freed) = &*self.locks.0;
        lock.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
        freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_busy_until_the_first_ends() {
        let f = VolumeLocks::default();
        let a = f.try_claim("v1".into()).unwrap();
        assert_eq!(f.try_claim("v1".into()).unwrap_err(), Busy("v1".into()));
        let _b = f.try_claim("v2".into()).unwrap();
        drop(a);
        f.try_claim("v1".into()).unwrap();
    }

    #[test]
    fn a_waiting_claim_gets_the_key_when_it_is_freed_and_not_before() {
        let f = VolumeLocks::default();
        let first = f.try_claim("v1".into()).unwrap();
        let g = f.clone();
        // Timed from before the waiter exists: the key is freed 200 ms after
        // this, however late the waiter's thread starts.
        let t = Instant::now();
        let waiter = std::thread::spawn(move || {
            let held = g.claim_within("v1".into(), Duration::from_secs(10));
            (held.is_ok(), t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
        let (got, waited) = waiter.join().unwrap();
        assert!(got);
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        let _again = f.try_claim("v2".into()).unwrap();
        let held = f.try_claim("v1".into()).unwrap();
        assert_eq!(
            f.claim_within("v1".into(), Duration::from_millis(50))
                .unwrap_err(),
            Busy("v1".into())
        );
        drop(held);
    }
}
