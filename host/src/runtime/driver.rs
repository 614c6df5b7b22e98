//! A loaded driver: its verified, compiled component ready to instantiate,
//! and the call path that runs one request in a fresh instance.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasmtime::component::{InstancePre, Linker};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::audit::Decision;
use crate::bindings::types::DriverInfo;
use crate::call::{CallError, Operation, Outcome};
use crate::capability::context::{CallContext, DriverEnv};
use crate::capability::imports::Surface;
use crate::digest::Sha256Digest;
use crate::policy::DriverPolicy;
use crate::runtime::artifact_cache::{ArtifactCache, Provenance};
use crate::runtime::concurrency::CallSlots;
use crate::runtime::engine::DriverEngine;
use crate::runtime::exports::Exports;

/// Why a driver could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("driver `{driver}`: cannot read component {path}: {source}")]
    Read {
        /// The driver, by policy name.
        driver: String,
        /// The component or storage-root path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not the one the policy pins.
    #[error("driver `{driver}`: component {path} has sha256 {actual}, but policy pins {expected}")]
    DigestMismatch {
        /// The driver, by policy name.
        driver: String,
        /// The component or storage-root path.
        path: String,
        /// The digest the policy pins.
        expected: String,
        /// The digest the file has.
        actual: String,
    },
    /// The policy pins the driver by signer, and the file's signature is
    /// missing, wrong or by a key it does not trust.
    #[error("driver `{driver}`: component {path} is refused: {reason}")]
    Signature {
        /// The driver, by policy name.
        driver: String,
        /// The component path.
        path: String,
        /// What is wrong with its signature.
        reason: crate::signature::SignatureError,
    },
    /// The file is not a WebAssembly component (or does not compile).
    #[error("driver `{driver}`: {path} is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// The driver, by policy name.
        driver: String,
        /// The component or storage-root path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The component imports a capability its policy does not grant.
    #[error("driver `{driver}`: imports `{interface}`, which needs `{grant}` in its policy")]
    Ungranted {
        /// The driver, by policy name.
        driver: String,
        /// The imported interface, with its version.
        interface: String,
        /// The policy grant it needs.
        grant: &'static str,
    },
    /// The granted storage root cannot be opened.
    #[error("driver `{driver}`: cannot open storage root {path}: {source}")]
    StorageRoot {
        /// The driver, by policy name.
        driver: String,
        /// The component or storage-root path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The component does not implement the volume-driver world.
    #[error("driver `{driver}`: does not implement the volume-driver world: {reason}")]
    World {
        /// The driver, by policy name.
        driver: String,
        /// What is missing or mistyped.
        reason: String,
    },
    /// The component did not answer its identity call at load.
    #[error("driver `{driver}`: identity check failed: {reason}")]
    Identity {
        /// The driver, by policy name.
        driver: String,
        /// What the call answered.
        reason: String,
    },
}

/// How long a probe's identity call may take: CSI Probe and `/healthz`
/// answer within 100 ms whatever a driver does.
pub const PROBE_DEADLINE: Duration = Duration::from_millis(80);

/// One version of a driver, ready to serve calls.
pub struct LoadedDriver {
    env: Arc<DriverEnv>,
    pre: InstancePre<CallContext>,
    exports: Exports,
    surface: Surface,
    info: DriverInfo,
    /// Shared by every version of the driver while `limits.concurrency`
    /// stays the same: a reload does not double the calls it may run.
    slots: Arc<CallSlots>,
    provenance: Provenance,
    /// Keeps the epoch ticking (deadlines firing) while this version lives.
    engine: Arc<DriverEngine>,
    /// The linker it was linked with, on `engine`: the driver's next
    /// version may be loaded onto both (see [`Self::engine`]).
    linker: Arc<Linker<CallContext>>,
}

/// Reads a driver's component file and checks it against the policy's pin
/// (its digest, its signature); returns its bytes and their digest.
pub fn read_pinned(policy: &DriverPolicy) -> Result<(Vec<u8>, Sha256Digest), LoadError> {
    let driver = policy.name.as_str();
    let path = &policy.component;
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        driver: driver.to_owned(),
        path: path.display().to_string(),
        source,
    })?;
    let actual = Sha256Digest::of(&bytes);
    if let Some(expected) = policy.pin.sha256.filter(|e| *e != actual) {
        return Err(LoadError::DigestMismatch {
            driver: driver.to_owned(),
            path: path.display().to_string(),
            expected: expected.to_hex(),
            actual: actual.to_hex(),
        });
    }
    if !policy.pin.signed_by.is_empty() {
        let signer = crate::signature::verify(&bytes, &policy.pin.signed_by).map_err(|reason| {
            LoadError::Signature {
                driver: driver.to_owned(),
                path: path.display().to_string(),
                reason,
            }
        })?;
        tracing::debug!(driver, %signer, digest = %actual, "component signature verified");
    }
    Ok((bytes, actual))
}

/// Why bytes are not a component, in words an operator can act on.
pub fn component_shape_problem(bytes: &[u8]) -> Option<String> {
    match bytes {
        [0, b'a', b's', b'm', _, _, 0, 0, ..] => {
            Some("it is a core WebAssembly module; wrap it with `wasm-tools component new`".into())
        }
        [0, b'a', b's', b'm', _, _, 1, 0, ..] => None,
        _ => Some("it does not start with the WebAssembly magic number".into()),
    }
}

impl LoadedDriver {
    /// Compiles (or loads from cache) `bytes`, the component `env` names
    /// as read and checked by [`read_pinned`], checks its imports against
    /// the grants and its exports against the world, links it and asks its
    /// identity. Calls wait for `slots`.
    pub fn load(
        engine: &Arc<DriverEngine>,
        linker: &Arc<Linker<CallContext>>,
        cache: &ArtifactCache,
        env: DriverEnv,
        bytes: &[u8],
        slots: Arc<CallSlots>,
    ) -> Result<Self, LoadError> {
        let policy = &env.policy;
        let driver = policy.name.to_string();
        let path = policy.component.display().to_string();
        if let Some(reason) = component_shape_problem(bytes) {
            return Err(LoadError::NotAComponent {
                driver,
                path,
                reason,
            });
        }
        let (component, provenance) = cache
            .load_or_compile(engine.engine(), &env.component, bytes)
            .map_err(|e| LoadError::NotAComponent {
                driver: driver.clone(),
                path: path.clone(),
                reason: format!("{e:#}"),
            })?;
        let surface = Surface::of(engine.engine(), &component);
        if let Some(missing) = surface.ungranted(&policy.grants).next() {
            return Err(LoadError::Ungranted {
                driver,
                interface: missing.name.clone(),
                grant: missing.grant,
            });
        }
        let world = |e: wasmtime::Error| LoadError::World {
            driver: driver.clone(),
            reason: format!("{e:#}"),
        };
        let pre = linker.instantiate_pre(&component).map_err(world)?;
        let exports = Exports::find(&component).map_err(|reason| LoadError::World {
            driver: driver.clone(),
            reason,
        })?;
        let mut loaded = Self {
            env: Arc::new(env),
            engine: engine.clone(),
            linker: linker.clone(),
            pre,
            exports,
            surface,
            info: DriverInfo {
                name: String::new(),
                vendor_version: String::new(),
                features: Vec::new(),
                manifest: Vec::new(),
            },
            slots,
            provenance,
        };
        // Every export must have the type calls use, before any call relies on it.
        loaded.typecheck_exports().map_err(world)?;
        // The first call doubles as a readiness probe: the driver must answer identity.
        match loaded.call("load", Operation::Info) {
            Ok(Outcome::Info(info)) => loaded.info = info,
            Ok(other) => {
                return Err(LoadError::Identity {
                    driver,
                    reason: format!("unexpected answer {other:?}"),
                })
            }
            Err(e) => {
                return Err(LoadError::Identity {
                    driver,
                    reason: e.to_string(),
                })
            }
        }
        Ok(loaded)
    }

    /// Opens a driver's storage root (at load, once).
    pub fn open_root(driver: &str, root: &Path) -> Result<cap_std::fs::Dir, LoadError> {
        cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()).map_err(|source| {
            LoadError::StorageRoot {
                driver: driver.to_owned(),
                path: root.display().to_string(),
                source,
            }
        })
    }

    /// The policy name of the driver.
    pub fn name(&self) -> &str {
        self.env.policy.name.as_str()
    }

    /// What the driver said about itself at load.
    pub fn info(&self) -> &DriverInfo {
        &self.info
    }

    /// What the component imports and exports.
    pub fn surface(&self) -> &Surface {
        &self.surface
    }

    /// The driver's policy entry.
    pub fn policy(&self) -> &DriverPolicy {
        &self.env.policy
    }

    /// Calls running now and calls waiting for a slot (`limits.concurrency`).
    pub fn calls(&self) -> (u32, u32) {
        self.slots.counts()
    }

    /// Whether the compiled artifact came from the cache.
    pub fn provenance(&self) -> Provenance {
        self.provenance
    }

    /// The sha256 of the component this version runs (audit records carry it).
    pub fn digest(&self) -> &Sha256Digest {
        &self.env.component
    }

    /// The engine and linker this version runs on, which its next version
    /// reuses when its limits still fit: no new instance pool, epoch thread
    /// or linker per reload, and the pool's slots already warm.
    pub fn engine(&self) -> (&Arc<DriverEngine>, &Arc<Linker<CallContext>>) {
        (&self.engine, &self.linker)
    }

    /// The call slots this version shares with the versions before it.
    pub fn slots(&self) -> &Arc<CallSlots> {
        &self.slots
    }

    /// Runs one operation in a fresh instance, within the driver's deadline,
    /// memory and concurrency limits, and audits it.
    pub fn call(&self, request_id: &str, op: Operation) -> Result<Outcome, CallError> {
        // wasmtime-wasi's filesystem blocks on tokio at every operation, which
        // a tokio worker must not: a driver with the storage root preopened
        // in WASI runs its whole call off the worker it arrived on.
        let wasi_fs = (self.env.policy.grants.storage.as_ref()).is_some_and(|s| s.wasi_preopen);
        let metrics = &crate::metrics::METRICS;
        metrics.in_flight(self.name(), 1);
        let answer = if wasi_fs {
            crate::capability::wasi_io::off_worker(|| self.call_here(request_id, op))
        } else {
            self.call_here(request_id, op)
        };
        metrics.in_flight(self.name(), -1);
        metrics.driver_call(self.name(), answer.as_ref().map(|_| ()));
        answer
    }

    /// Whether the driver is ready (CSI Probe, `/healthz`), known within
    /// [`PROBE_DEADLINE`] whatever its calls do: with a slot free, its
    /// identity export must answer on a fresh instance within that time;
    /// with every slot taken by calls (each bounded by its own deadline)
    /// it is busy, not broken, and ready without a call.
    pub fn probe(&self, request_id: &str) -> Result<(), CallError> {
        let Some(slot) = self.slots.acquire(Duration::ZERO) else {
            return Ok(());
        };
        match self.run_in_slot(slot, request_id, Operation::Info, PROBE_DEADLINE)? {
            Outcome::Info(_) => Ok(()),
            other => Err(CallError::BadAnswer(format!("identity answered {other:?}"))),
        }
    }

    /// [`Self::call`] on this thread.
    fn call_here(&self, request_id: &str, op: Operation) -> Result<Outcome, CallError> {
        let limits = self.env.policy.limits;
        let deadline = Duration::from_millis(limits.deadline_ms);
        let slot = self
            .slots
            .acquire(deadline)
            .ok_or(CallError::Busy(limits.concurrency))?;
        self.run_in_slot(slot, request_id, op, deadline)
    }

    /// Runs `op` in a fresh instance, holding `_slot`, within `deadline`, and audits it.
    fn run_in_slot(
        &self,
        _slot: crate::runtime::concurrency::Slot<'_>,
        request_id: &str,
        mut op: Operation,
        deadline: Duration,
    ) -> Result<Outcome, CallError> {
        let limits = self.env.policy.limits;
        if !self.env.policy.grants.secrets {
            op.strip_secrets();
        }
        let name = op.name();
        let mut args = serde_json::to_value(&op).unwrap_or(json!(null));
        let mut store = self
            .store(request_id)
            .map_err(|e| CallError::Trapped(format!("cannot set up the call: {e:#}")))?;
        store.data_mut().deadline = Instant::now() + deadline;

        crate::fault::point("call", name);
        let result = self.exports.dispatch(&mut store, &self.pre, op);
        crate::fault::point("called", name);
        let result = result.map_err(|e| {
            classify(
                e,
                store.data(),
                deadline.as_millis() as u64,
                limits.memory_bytes,
            )
        });
        let result = result
            .and_then(|r| r.map_err(CallError::Driver))
            .and_then(|o| o.check_ids().map(|()| o).map_err(CallError::BadAnswer));
        let operation = format!("call:{name}");
        let (decision, outcome) = match &result {
            Ok(_) => (Decision::Allow, "ok".to_owned()),
            Err(
                e @ (CallError::Deadline(_)
                | CallError::Memory(_)
                | CallError::Trapped(_)
                | CallError::BadAnswer(_)),
            ) => (Decision::Deny, format!("contained: {e}")),
            Err(e) => (Decision::Allow, format!("error: {e}")),
        };
        let ctx = store.data_mut();
        let request = args.get_mut("request").map(Value::take).unwrap_or_default();
        ctx.audit(&operation, request, decision, outcome);
        ctx.finish();
        result
    }

    /// A store for one call: its context, memory limit and deadline.
    fn store(&self, request_id: &str) -> wasmtime::Result<Store<CallContext>> {
        let ctx = CallContext::new(self.env.clone(), request_id.to_owned())?;
        let mut store = Store::new(self.engine.engine(), ctx);
        store.limiter(|c| c);
        // At the first tick the call is slow enough to let go of the
        // worker's waiting task (see sync_calls). The deadline is absolute
        // (the context's), so time spent waiting in host calls counts.
        let mut first_tick = true;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |cx| {
            if std::mem::take(&mut first_tick) {
                crate::runtime::sync_calls::may_block();
            }
            let left = cx.data().deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Continue(DriverEngine::ticks_for(left) - 1))
            }
        });
        Ok(store)
    }

    /// Proves, on one instance, that every export has the type calls use.
    fn typecheck_exports(&self) -> wasmtime::Result<()> {
        let mut store = self.store("load")?;
        let instance = self.pre.instantiate(&mut store)?;
        self.exports.typecheck(&mut store, &instance)
    }
}

/// Turns a wasmtime error into the contained fault it stands for, with the
/// guest's last words (e.g. its panic message) where it printed any.
fn classify(e: wasmtime::Error, ctx: &CallContext, deadline_ms: u64, memory: u64) -> CallError {
    if ctx.memory_exceeded {
        return CallError::Memory(memory);
    }
    let mut message = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return CallError::Deadline(deadline_ms),
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    };
    if let Some(last) = ctx.last_stdio_line() {
        message = format!("{message}; guest said: {last}");
    }
    CallError::Trapped(message)
}
