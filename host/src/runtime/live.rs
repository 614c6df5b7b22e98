//! The version of a driver new calls go to.
//!
//! A reload swaps it while calls in flight finish on the version they
//! started on: each holds its [`LoadedDriver`] until it ends, and the old
//! version is dropped with the last of them. One front-end request (a CSI
//! RPC, a Flex call-out) may make several driver calls; it is pinned to
//! the version its first call took, so no request is served half by one
//! version and half by the next.

use std::cell::{OnceCell, RefCell};
use std::future::Future;
use std::sync::{Arc, RwLock};

use crate::runtime::driver::LoadedDriver;

/// A driver by policy name, whose serving version a reload may replace.
pub struct LiveDriver {
    current: RwLock<Arc<LoadedDriver>>,
}

tokio::task_local! {
    /// The version an async request (a CSI RPC) is pinned to.
    static TASK_PIN: OnceCell<Pin>;
}

thread_local! {
    /// The version a blocking request (a Flex call-out) is pinned to.
    static THREAD_PIN: RefCell<Option<Pin>> = const { RefCell::new(None) };
}

/// A pinned version, with the live driver it belongs to (a request is only
/// ever pinned for the driver it was made to).
#[derive(Clone)]
struct Pin {
    /// The live driver's address: it only identifies it.
    live: usize,
    version: Arc<LoadedDriver>,
}

impl LiveDriver {
    /// A driver serving `first`.
    pub fn new(first: Arc<LoadedDriver>) -> Self {
        Self {
            current: RwLock::new(first),
        }
    }

    /// The version new calls go to now.
    pub fn current(&self) -> Arc<LoadedDriver> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes `next` the version new calls go to; returns the one it replaced.
    pub fn replace(&self, next: Arc<LoadedDriver>) -> Arc<LoadedDriver> {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *current, next)
    }

    /// The version for a driver call: the one this request is pinned to,
    /// else the current one (which pins the request, inside
    /// [`pinned`] or [`Self::pinned_here`]).
    pub fn version(&self) -> Arc<LoadedDriver> {
        let me = self.id();
        let pick = |slot: &OnceCell<Pin>| -> Option<Arc<LoadedDriver>> {
            let pin = slot.get_or_init(|| Pin {
                live: me,
                version: self.current(),
            });
            (pin.live == me).then(|| pin.version.clone())
        };
        if let Ok(Some(v)) = TASK_PIN.try_with(pick) {
            return v;
        }
        THREAD_PIN
            .with(|p| match &*p.borrow() {
                Some(pin) if pin.live == me => Some(pin.version.clone()),
                _ => None,
            })
            .unwrap_or_else(|| self.current())
    }

    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Runs `f` (one blocking request) with every driver call in it on the
    /// version current when it starts.
    pub fn pinned_here<T>(&self, f: impl FnOnce() -> T) -> T {
        /// Puts back the pin that was set before, even if `f` panics.
        struct Restore(Option<Pin>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let before = self.0.take();
                THREAD_PIN.with(|p| *p.borrow_mut() = before);
            }
        }
        let pin = Pin {
            live: self.id(),
            version: self.current(),
        };
        let _restore = Restore(THREAD_PIN.with(|p| p.borrow_mut().replace(pin)));
        f()
    }
}

/// Runs `request` (one async request, e.g. a CSI RPC) so that its driver
/// calls all go to the version the first of them took.
pub async fn pinned<F: Future>(request: F) -> F::Output {
    TASK_PIN.scope(OnceCell::new(), request).await
}
