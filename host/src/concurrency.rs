//! A per-driver bound on calls in flight.
//!
//! A caller waits for a slot up to the call's deadline, then gets `Busy`:
//! kubelet retries, and one driver cannot take every blocking thread.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Counting slots for one driver's calls.
#[derive(Debug)]
pub struct CallSlots {
    limit: u32,
    in_use: Mutex<u32>,
    freed: Condvar,
}

/// A held slot, released on drop.
#[derive(Debug)]
pub struct Slot<'a>(&'a CallSlots);

impl CallSlots {
    /// `limit` calls at once.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            in_use: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Takes a slot, waiting at most `wait`.
    pub fn acquire(&self, wait: Duration) -> Option<Slot<'_>> {
        let until = Instant::now() + wait;
        let mut n = self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= self.limit {
            let left = until.checked_duration_since(Instant::now())?;
            n = self
                .freed
                .wait_timeout(n, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *n += 1;
        Some(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut n = self.0.in_use.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_then_gives_up_and_frees_on_drop() {
        let slots = CallSlots::new(1);
        let a = slots.acquire(Duration::ZERO).unwrap();
        assert!(slots.acquire(Duration::from_millis(5)).is_none());
        drop(a);
        assert!(slots.acquire(Duration::ZERO).is_some());
    }
}
