//! Kill points: the host stops dead at a named point of its work, for the
//! tests that prove a crash anywhere leaves nothing behind that kubelet's
//! retry cannot finish.
//!
//! Honoured only in debug builds (the ones the tests run; a release build
//! compiles every [`point`] to nothing and never reads the environment):
//!
//! - `WASMVOL_FAULT_AT=<point>#<n>` kills the host with SIGKILL (no
//!   destructors, no flush, as a node crash or the OOM killer would) the
//!   `n`-th time it reaches `<point>`;
//! - `WASMVOL_FAULT_TRACE=<file>` appends the name of every point reached,
//!   one per line, so a test learns which points a flow passes.
//!
//! Points are named `<site>:<detail>`: `call:<export>` and
//! `called:<export>` around each driver call, `capability:<operation>`
//! after a capability did its work and before it is audited, `commit:<namespace>`
//! and `committed:<namespace>` around each durable store write.

/// Marks a point of the host's work: see the [module](self).
#[cfg(debug_assertions)]
pub fn point(site: &str, detail: &str) {
    if let Some(plan) = plan::PLAN.get_or_init(plan::Plan::from_env) {
        plan.reached(site, detail);
    }
}

/// Marks a point of the host's work: nothing in a release build.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_site: &str, _detail: &str) {}

#[cfg(debug_assertions)]
mod plan {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    /// What the environment asked for, read once.
    pub static PLAN: OnceLock<Option<Plan>> = OnceLock::new();

    /// The point to die at, and where to trace to.
    pub struct Plan {
        at: Option<(String, u64)>,
        trace: Option<Mutex<std::fs::File>>,
        hits: Mutex<HashMap<String, u64>>,
    }

    impl Plan {
        /// The plan `WASMVOL_FAULT_AT` and `WASMVOL_FAULT_TRACE` give, if any.
        pub fn from_env() -> Option<Self> {
            let at = std::env::var("WASMVOL_FAULT_AT").ok().map(|v| {
                let (name, n) = v.rsplit_once('#').unwrap_or((&v, "1"));
                let n = n.parse().expect("WASMVOL_FAULT_AT=<point>#<n>");
                (name.to_owned(), n)
            });
            let trace = std::env::var_os("WASMVOL_FAULT_TRACE").map(|path| {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .expect("WASMVOL_FAULT_TRACE names a writable file");
                Mutex::new(file)
            });
            (at.is_some() || trace.is_some()).then(|| Plan {
                at,
                trace,
                hits: Mutex::default(),
            })
        }

        /// Counts the point, traces it and dies there if asked to.
        pub fn reached(&self, site: &str, detail: &str) {
            let name = format!("{site}:{detail}");
            let n = {
                let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
                let n = hits.entry(name.clone()).or_default();
                *n += 1;
                *n
            };
            if let Some(trace) = &self.trace {
                let mut f = trace.lock().unwrap_or_else(|p| p.into_inner());
                let _ = writeln!(f, "{name}");
            }
            if self
                .at
                .as_ref()
                .is_some_and(|(at, k)| *at == name && *k == n)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::getpid(),
                    nix::sys::signal::Signal::SIGKILL,
                );
                // SIGKILL cannot be caught; it is only ever delivered, never queued behind us.
                loop {
                    std::thread::park();
                }
            }
        }
    }
}
