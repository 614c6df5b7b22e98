//! Running synchronous driver calls from the async front ends.
//!
//! A driver call is synchronous (wasm plus syscalls, bounded by the driver's
//! deadline). Handing it to another thread costs thread wake-ups, which on a
//! small VM outweigh a whole hostpath publish: measured here, about 45 µs
//! per call through `spawn_blocking` and 120 µs through `block_in_place`.
//! So a call runs in place on the tokio worker that received it, as long as
//! that leaves at least one worker free for everything else (sockets,
//! timers, other RPCs); past that it goes to the blocking pool, and a slow
//! or stuck driver can never hold every worker.
//!
//! One task can still wait behind a call in place: the one in the worker's
//! LIFO slot (the task this worker woke last, say the connection task of
//! this very socket), which other workers cannot steal. Moving it out costs
//! a thread wake-up, which most calls (a hostpath publish ends in ~50 µs)
//! do not need. So it is moved out only once the call turns slow (with the
//! whole worker, by `block_in_place`; see [`may_block`]): at the
//! first epoch tick the call sees while running wasm, and before any host
//! operation that may block (a device, a walk of a tree, a durable write),
//! which all call [`may_block`]. A task woken just before a call therefore
//! waits at most one epoch tick, not the call's whole deadline.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Places synchronous calls: in place while workers remain, else on the blocking pool.
#[derive(Debug)]
pub struct SyncCalls {
    /// Calls that may still run in place.
    free: AtomicUsize,
}

thread_local! {
    /// Set while a call runs in place on this worker and its LIFO slot was
    /// not yet cleared.
    static IN_PLACE: Cell<bool> = const { Cell::new(false) };
}

/// A claim on one in-place call; returned on drop, even if the call panics.
struct InPlace<'a>(&'a AtomicUsize);

impl Drop for InPlace<'_> {
    fn drop(&mut self) {
        IN_PLACE.set(false);
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Tells the call running on this thread that it may now block for long:
/// if it runs in place on a tokio worker, the task waiting in the worker's
/// LIFO slot is handed to another worker (once per call). Free everywhere
/// else, so host code calls it without knowing where it runs.
pub fn may_block() {
    if IN_PLACE.replace(false) {
        // `block_in_place` moves the LIFO slot's task to the run queue
        // whatever the slot's state, and offers this worker's core to
        // another thread. An empty task spawned into the slot would not
        // do: while tokio has the slot disabled (after three LIFO polls in
        // a row) a spawn goes to the run queue and the slot's task stays,
        // stuck until the call ends (seen: a Probe held for the whole
        // 3 s deadline of a call running beside it, 1 run in 10 under load).
        tokio::task::block_in_place(|| {});
        // If this thread took its core straight back, wake a parked worker
        // to steal what now waits in the run queue: the second spawn
        // displaces the first from the slot, which always notifies.
        drop(tokio::spawn(async {}));
        drop(tokio::spawn(async {}));
    }
}

impl SyncCalls {
    /// For a multi-thread runtime of `workers` workers: all but one may run a call in place.
    pub fn for_workers(workers: usize) -> Self {
        Self {
            free: AtomicUsize::new(workers.saturating_sub(1)),
        }
    }

    fn claim(&self) -> Option<InPlace<'_>> {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|_| InPlace(&self.free))
    }

    /// Runs `call` to completion and returns its result.
    ///
    /// Must be awaited on a multi-thread tokio runtime; `call` must reach
    /// [`may_block`] (directly or through the driver's epoch ticks) before
    /// anything that may take long.
    pub async fn run<T: Send + 'static>(&self, call: impl FnOnce() -> T + Send + 'static) -> T {
        if let Some(_claim) = self.claim() {
            IN_PLACE.set(true);
            return call();
        }
        match tokio::task::spawn_blocking(call).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("blocking driver call cancelled: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn two_workers() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn one_worker_always_stays_free() {
        let calls = SyncCalls::for_workers(3);
        let a = calls.claim().unwrap();
        let _b = calls.claim().unwrap();
        assert!(calls.claim().is_none(), "the third worker stays free");
        drop(a);
        assert!(calls.claim().is_some());
        assert!(SyncCalls::for_workers(1).claim().is_none());
    }

    #[test]
    fn a_blocked_worker_does_not_stop_the_runtime() {
        let rt = two_workers();
        let calls = Arc::new(SyncCalls::for_workers(2));
        rt.block_on(async {
            // Two slow calls at once: one in place, one on the blocking pool.
            let slow = |c: Arc<SyncCalls>| {
                tokio::spawn(async move {
                    c.run(|| std::thread::sleep(Duration::from_millis(300)))
                        .await
                })
            };
            let (a, b) = (slow(calls.clone()), slow(calls.clone()));
            // Meanwhile the runtime still answers quickly.
            let t = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(
                t.elapsed() < Duration::from_millis(200),
                "{:?}",
                t.elapsed()
            );
            a.await.unwrap();
            b.await.unwrap();
        });
        assert_eq!(calls.free.load(Ordering::Acquire), 1, "claims returned");
    }

    #[test]
    fn a_task_woken_just_before_a_call_in_place_runs_during_it() {
        let rt = two_workers();
        let calls = Arc::new(SyncCalls::for_workers(2));
        let waited = rt.block_on(async move {
            tokio::spawn(async move {
                let (tx, rx) = tokio::sync::oneshot::channel::<std::time::Instant>();
                let woken = tokio::spawn(async move { rx.await.unwrap().elapsed() });
                // Let `woken` park on its channel, then wake it from this
                // worker (into this worker's LIFO slot) and block in place.
                tokio::time::sleep(Duration::from_millis(20)).await;
                tx.send(std::time::Instant::now()).unwrap();
                calls
                    .run(|| {
                        may_block();
                        std::thread::sleep(Duration::from_millis(500))
                    })
                    .await;
                woken.await.unwrap()
            })
            .await
            .unwrap()
        });
        assert!(
            waited < Duration::from_millis(250),
            "the woken task waited {waited:?} for the blocking call"
        );
    }

    #[test]
    fn may_block_outside_an_in_place_call_does_nothing() {
        // No runtime here: a spawn would panic.
        may_block();
    }

    #[test]
    fn only_the_call_in_place_is_armed() {
        let rt = two_workers();
        let calls = Arc::new(SyncCalls::for_workers(2));
        let (during, after) = rt.block_on(async move {
            tokio::spawn(async move {
                let during = calls.run(|| IN_PLACE.get()).await;
                (during, IN_PLACE.get())
            })
            .await
            .unwrap()
        });
        assert!(during, "armed while the call runs in place");
        assert!(!after, "disarmed once it returned, on the same worker");
    }
}
