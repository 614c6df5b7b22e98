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
    counts: Mutex<Counts>,
    freed: Condvar,
}

/// Slots taken, and callers waiting for one (woken only when there are any:
/// a notify is a syscall on every call otherwise).
#[derive(Debug, Default)]
struct Counts {
    in_use: u32,
    waiting: u32,
}

/// A held slot, released on drop.
#[derive(Debug)]
pub struct Slot<'a>(&'a CallSlots);

impl CallSlots {
    /// `limit` calls at once.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            counts: Mutex::new(Counts::default()),
            freed: Condvar::new(),
        }
    }

    /// Slots taken and callers waiting for one, now.
    pub fn counts(&self) -> (u32, u32) {
        let n = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        (n.in_use, n.waiting)
    }

    /// Takes a slot, waiting at most `wait`.
    pub fn acquire(&self, wait: Duration) -> Option<Slot<'_>> {
        let until = Instant::now() + wait;
        let mut n = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        while n.in_use >= self.limit {
            let left = until.checked_duration_since(Instant::now())?;
            n.waiting += 1;
            n = self
                .freed
                .wait_timeout(n, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            n.waiting -= 1;
        }
        n.in_use += 1;
        Some(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut n = self.0.counts.lock().unwrap_or_else(|p| p.into_inner());
        n.in_use -= 1;
        if n.waiting > 0 {
            self.0.freed.notify_one();
        }
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

    #[test]
    fn a_waiter_gets_the_slot_freed_while_it_waits() {
        let slots = std::sync::Arc::new(CallSlots::new(1));
        let held = slots.acquire(Duration::ZERO).unwrap();
        let waiter = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                slots.acquire(Duration::from_secs(10)).is_some()
                    && t.elapsed() < Duration::from_secs(5)
            })
        };
        while slots.counts.lock().unwrap().waiting == 0 {
            std::thread::yield_now();
        }
        drop(held);
        assert!(
            waiter.join().unwrap(),
            "woken by the release, long before its deadline"
        );
    }
}
