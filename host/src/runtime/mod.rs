//! The runtime: every driver of a policy, sharing the state store and the
//! audit log, and the reload that swaps drivers while they serve.

pub mod artifact_cache;
pub mod concurrency;
pub mod driver;
pub mod engine;
pub mod exports;
pub mod live;
pub mod sync_calls;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use wasmtime::component::{HasSelf, Linker};

use crate::audit::AuditLog;
use crate::bindings::VolumeDriver;
use crate::call::{CallError, Operation, Outcome};
use crate::capability::context::{CallContext, DriverEnv};
use crate::digest::Sha256Digest;
use crate::policy::{DriverPolicy, Policy};
use crate::runtime::artifact_cache::ArtifactCache;
use crate::runtime::concurrency::CallSlots;
use crate::runtime::driver::{read_pinned, LoadedDriver};
use crate::runtime::engine::DriverEngine;
use crate::runtime::live::LiveDriver;
use crate::store::state::StateStore;

/// Every driver of the policy being served, on one state store and audit log.
pub struct Runtime {
    drivers: RwLock<BTreeMap<String, Arc<LiveDriver>>>,
    /// How many reloads have been committed, and the policy the drivers
    /// were loaded from (the last reload's).
    policy: Mutex<(u64, Policy)>,
    state: Arc<StateStore>,
    audit: Arc<AuditLog>,
    cache: ArtifactCache,
    last_reload: Mutex<Option<ReloadNote>>,
}

/// How the last reload went, for `/healthz` and `wasmvol status`.
#[derive(Debug, Clone)]
pub struct ReloadNote {
    /// When it ended.
    pub at: std::time::SystemTime,
    /// What it changed, or why it was refused.
    pub outcome: Result<String, String>,
}

impl std::fmt::Display for ReloadNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = crate::audit::rfc3339(self.at);
        match &self.outcome {
            Ok(changed) => write!(f, "last reload at {at}: {changed}"),
            Err(why) => write!(
                f,
                "last reload at {at} refused, drivers serve as before: {why}"
            ),
        }
    }
}

/// A linker with WASI (empty unless policy adds to it) and our capability interfaces.
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<CallContext>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    // Waits within the call's deadline, and off a tokio worker.
    crate::capability::wasi_io::add_to_linker(&mut linker)?;
    VolumeDriver::add_to_linker::<CallContext, HasSelf<CallContext>>(&mut linker, |c| c)?;
    Ok(linker)
}

/// Why the runtime did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `only` named a driver the policy does not list.
    #[error("{policy}: no driver named `{driver}`")]
    NoSuchDriver {
        /// The policy file.
        policy: String,
        /// The name asked for.
        driver: String,
    },
    /// The wasmtime engine or linker could not be set up.
    #[error("engine: {0}")]
    Engine(String),
    /// The durable store did not open.
    #[error("state store in {dir}: {source}")]
    State {
        /// The state dir.
        dir: String,
        /// Why.
        source: crate::store::state::StateError,
    },
    /// The audit log did not open.
    #[error("audit log {path}: {source}")]
    Audit {
        /// The log file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A driver failed its load checks.
    #[error(transparent)]
    Load(#[from] crate::runtime::driver::LoadError),
}

impl Runtime {
    /// Loads the drivers of `policy` (only `only`, when given). Any driver
    /// that fails its checks stops the start with an error naming it.
    pub fn start(policy: &Policy, only: Option<&str>) -> Result<Self, StartError> {
        let mut policy = policy.clone();
        if let Some(n) = only {
            policy.drivers.retain(|d| d.name.as_str() == n);
            if policy.drivers.is_empty() {
                return Err(StartError::NoSuchDriver {
                    policy: policy.source.display().to_string(),
                    driver: n.to_owned(),
                });
            }
        }
        let state = Arc::new(
            StateStore::open(&policy.host.state_dir.join("state.redb")).map_err(|source| {
                StartError::State {
                    dir: policy.host.state_dir.display().to_string(),
                    source,
                }
            })?,
        );
        let audit = Arc::new(AuditLog::open(&policy.host.audit_log).map_err(|source| {
            StartError::Audit {
                path: policy.host.audit_log.display().to_string(),
                source,
            }
        })?);
        let runtime = Self {
            drivers: RwLock::default(),
            policy: Mutex::new((0, policy.clone())),
            state,
            audit,
            cache: ArtifactCache::new(&policy.host.cache_dir),
            last_reload: Mutex::new(None),
        };
        let loaded = runtime.load_all(policy.drivers.iter(), &BTreeMap::new())?;
        let mut drivers = runtime.drivers.write().unwrap_or_else(|p| p.into_inner());
        for (name, version) in loaded {
            drivers.insert(name, Arc::new(LiveDriver::new(version)));
        }
        drop(drivers);
        Ok(runtime)
    }

    /// Loads `entries`. A driver whose concurrency is unchanged shares the
    /// call slots of its version in `serving`, so old and new calls
    /// together stay within its limit, and so also its engine and linker
    /// when its memory limit fits that engine's pool: old and new calls
    /// then take at most the instances the engine was sized for. The
    /// others are loaded on one new engine sized for them.
    fn load_all<'p>(
        &self,
        entries: impl Iterator<Item = &'p DriverPolicy> + Clone,
        serving: &BTreeMap<String, Arc<LoadedDriver>>,
    ) -> Result<Vec<(String, Arc<LoadedDriver>)>, StartError> {
        let engine_err = |e: wasmtime::Error| StartError::Engine(format!("{e:#}"));
        let same_slots = |d: &DriverPolicy| {
            serving
                .get(d.name.as_str())
                .filter(|v| v.policy().limits.concurrency == d.limits.concurrency)
        };
        let reusable = |d: &DriverPolicy| {
            same_slots(d).filter(|v| v.engine().0.max_memory_bytes() >= d.limits.memory_bytes)
        };
        let fresh = entries.clone().filter(|d| reusable(d).is_none());
        let fresh = match fresh.clone().map(|d| d.limits.memory_bytes).max() {
            Some(max_memory) => {
                // One pooled instance for every call policy lets run at once.
                let instances = fresh.map(|d| d.limits.concurrency).sum();
                let engine =
                    Arc::new(DriverEngine::new(max_memory, instances).map_err(engine_err)?);
                let linker = Arc::new(linker(engine.engine()).map_err(engine_err)?);
                Some((engine, linker))
            }
            None => None,
        };
        let mut loaded = Vec::new();
        for d in entries {
            let (bytes, component) = read_pinned(d)?;
            let root = match &d.grants.storage {
                Some(s) => Some(LoadedDriver::open_root(d.name.as_str(), &s.root)?),
                None => None,
            };
            let env = DriverEnv {
                policy: d.clone(),
                component,
                root,
                state: self.state.clone(),
                audit: self.audit.clone(),
                lvm_groups: Default::default(),
                attach_lock: Default::default(),
            };
            let slots = match same_slots(d) {
                Some(v) => v.slots().clone(),
                None => Arc::new(CallSlots::new(d.limits.concurrency)),
            };
            let (engine, linker) = match (reusable(d), &fresh) {
                (Some(v), _) => v.engine(),
                (None, Some((engine, linker))) => (engine, linker),
                (None, None) => {
                    unreachable!("a fresh engine is made for every driver that cannot reuse one")
                }
            };
            let version = LoadedDriver::load(engine, linker, &self.cache, env, &bytes, slots)?;
            tracing::info!(driver = %d.name, name = %version.info().name, version = %version.info().vendor_version,
                digest = %version.digest(), provenance = ?version.provenance(), "driver loaded");
            loaded.push((d.name.to_string(), Arc::new(version)));
        }
        Ok(loaded)
    }

    /// Serves `next` from now on ([`Self::prepare`], then [`Self::commit`]).
    pub fn reload(&self, next: &Policy) -> Result<Reloaded, ReloadError> {
        let prepared = self.prepare(next)?;
        self.commit(prepared)
    }

    /// Loads and checks, off the request path, every driver of `next` whose
    /// entry changed or that is new; nothing serves them yet. Anything
    /// refused leaves every driver as it was.
    pub fn prepare(&self, next: &Policy) -> Result<PreparedReload, ReloadError> {
        let (base, host) = {
            let now = self.policy.lock().unwrap_or_else(|p| p.into_inner());
            (now.0, now.1.host.clone())
        };
        if next.host != host {
            return Err(ReloadError::HostSettings);
        }
        let serving: BTreeMap<String, Arc<LoadedDriver>> = self
            .drivers()
            .into_iter()
            .map(|live| {
                let v = live.current();
                (v.name().to_owned(), v)
            })
            .collect();
        // A driver pinned by signer may get a new release at the same path
        // with the same entry: its file is read again to see.
        let file_changed = |d: &DriverPolicy, v: &LoadedDriver| {
            !d.pin.signed_by.is_empty()
                && std::fs::read(&d.component).map_or(true, |b| Sha256Digest::of(&b) != *v.digest())
        };
        let changed = next.drivers.iter().filter(|d| {
            serving
                .get(d.name.as_str())
                .is_none_or(|v| v.policy() != *d || file_changed(d, v))
        });
        let loaded = self
            .load_all(changed, &serving)
            .map_err(ReloadError::Load)?;
        Ok(PreparedReload {
            base,
            policy: next.clone(),
            loaded: loaded.into_iter().collect(),
        })
    }

    /// Swaps in what [`Self::prepare`] loaded, all at once: new calls go
    /// to the new versions, calls in flight finish on theirs; new drivers
    /// are added and removed ones dropped (once their calls end).
    pub fn commit(&self, prepared: PreparedReload) -> Result<Reloaded, ReloadError> {
        let mut policy = self.policy.lock().unwrap_or_else(|p| p.into_inner());
        if policy.0 != prepared.base {
            return Err(ReloadError::Superseded);
        }
        let next = prepared.policy;
        let mut report = Reloaded::default();
        let mut retired = Vec::new();
        let mut drivers = self.drivers.write().unwrap_or_else(|p| p.into_inner());
        for (name, version) in prepared.loaded {
            let to = VersionOf::of(&version);
            match drivers.get(&name) {
                Some(live) => {
                    let old = live.replace(version);
                    report.replaced.push((name, VersionOf::of(&old), to));
                    retired.push(old);
                }
                None => {
                    drivers.insert(name.clone(), Arc::new(LiveDriver::new(version)));
                    report.added.push((name, to));
                }
            }
        }
        drivers.retain(|name, live| {
            let keep = next.drivers.iter().any(|d| d.name.as_str() == name);
            if !keep {
                let old = live.current();
                report.removed.push((name.clone(), VersionOf::of(&old)));
                retired.push(old);
            }
            keep
        });
        *policy = (policy.0 + 1, next);
        drop(drivers);
        retire(retired);
        Ok(report)
    }

    /// Keeps how the last reload went (however it ended: a policy that did
    /// not parse never reaches [`Self::prepare`]).
    pub fn note_reload(&self, outcome: Result<String, String>) {
        let note = ReloadNote {
            at: std::time::SystemTime::now(),
            outcome,
        };
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(note);
    }

    /// How the last reload went, if there was one.
    pub fn last_reload(&self) -> Option<ReloadNote> {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The policy the drivers serve now.
    pub fn policy(&self) -> Policy {
        self.policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// The host's durable store (front ends keep their records in it too).
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// The audit log every driver writes to (`serve` reopens it on SIGHUP).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// A driver by policy name, whose version a reload may swap.
    pub fn live(&self, name: &str) -> Option<Arc<LiveDriver>> {
        let drivers = self.drivers.read().unwrap_or_else(|p| p.into_inner());
        drivers.get(name).cloned()
    }

    /// The version of a driver serving now.
    pub fn driver(&self, name: &str) -> Option<Arc<LoadedDriver>> {
        self.live(name).map(|l| l.current())
    }

    /// Every driver, by name.
    pub fn drivers(&self) -> Vec<Arc<LiveDriver>> {
        let drivers = self.drivers.read().unwrap_or_else(|p| p.into_inner());
        drivers.values().cloned().collect()
    }

    /// Runs one operation on a driver.
    pub fn call(
        &self,
        driver: &str,
        request_id: &str,
        op: Operation,
    ) -> Result<Outcome, CallError> {
        self.driver(driver)
            .ok_or_else(|| CallError::UnknownDriver(driver.to_owned()))?
            .call(request_id, op)
    }
}

/// How long a retired version may keep calls (or a draining server) before
/// its last reference is let go anyway.
const RETIRE_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Drops versions a reload replaced once their calls in flight end, on a
/// thread of their own: the last reference to a version drops its engine
/// (unmapping its instance pool, stopping its epoch thread), which must not
/// fall to whichever call happened to finish last.
fn retire(versions: Vec<Arc<LoadedDriver>>) {
    if versions.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("wasmvol-retire".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            while versions.iter().any(|v| Arc::strong_count(v) > 1)
                && started.elapsed() < RETIRE_WAIT
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            for v in versions {
                tracing::info!(driver = v.name(), digest = %v.digest(), "driver version retired");
                drop(v);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no thread to retire old driver versions on; they go with their last call");
    }
}

/// A driver version, as a reload reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionOf {
    /// What the driver says its version is.
    pub version: String,
    /// The component's sha256.
    pub digest: Sha256Digest,
}

impl VersionOf {
    fn of(d: &LoadedDriver) -> Self {
        Self {
            version: d.info().vendor_version.clone(),
            digest: *d.digest(),
        }
    }
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        parts.extend(self.added.iter().map(|(n, v)| format!("added `{n}` {v}")));
        parts.extend(
            self.replaced
                .iter()
                .map(|(n, from, to)| format!("`{n}` {from} -> {to}")),
        );
        parts.extend(
            self.removed
                .iter()
                .map(|(n, v)| format!("removed `{n}` {v}")),
        );
        if parts.is_empty() {
            f.write_str("no driver changed")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

impl std::fmt::Display for VersionOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.version, &self.digest.to_hex()[..12])
    }
}

/// What a reload changed, by driver name.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Drivers new to the policy.
    pub added: Vec<(String, VersionOf)>,
    /// Drivers whose entry or component changed: from, to.
    pub replaced: Vec<(String, VersionOf, VersionOf)>,
    /// Drivers no longer in the policy.
    pub removed: Vec<(String, VersionOf)>,
}

/// Drivers loaded and checked for a reload, not yet serving.
pub struct PreparedReload {
    base: u64,
    policy: Policy,
    loaded: BTreeMap<String, Arc<LoadedDriver>>,
}

impl PreparedReload {
    /// The policy it reloads to.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The new version of driver `name`, when it is new or changed.
    pub fn version(&self, name: &str) -> Option<&Arc<LoadedDriver>> {
        self.loaded.get(name)
    }
}

/// Why a reload was refused (every driver serves on as before).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The `[host]` section changed: its sockets, store and log are opened once.
    #[error("the [host] section changed; its state dir, audit log, cache and sockets take effect only at a restart")]
    HostSettings,
    /// A new or changed driver failed its checks.
    #[error(transparent)]
    Load(StartError),
    /// Another reload was committed between this one's prepare and commit.
    #[error("another reload was committed meanwhile; reload again")]
    Superseded,
}
