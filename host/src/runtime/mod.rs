//! The runtime: every driver of a policy, loaded on one engine, sharing the
//! state store and the audit log.

pub mod artifact_cache;
pub mod concurrency;
pub mod driver;
pub mod engine;
pub mod exports;
pub mod sync_calls;

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::audit::AuditLog;
use crate::bindings::VolumeDriver;
use crate::call::{CallError, Operation, Outcome};
use crate::capability::context::{CallContext, DriverEnv};
use crate::policy::Policy;
use crate::runtime::artifact_cache::ArtifactCache;
use crate::runtime::driver::LoadedDriver;
use crate::runtime::engine::DriverEngine;
use crate::store::state::StateStore;

/// All loaded drivers of one policy.
pub struct Runtime {
    drivers: BTreeMap<String, Arc<LoadedDriver>>,
    state: Arc<StateStore>,
    audit: Arc<AuditLog>,
    // Declared last: drivers hold engine references and drop first.
    _engine: DriverEngine,
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
        let selected: Vec<_> = policy
            .drivers
            .iter()
            .filter(|d| only.is_none_or(|n| d.name.as_str() == n))
            .collect();
        if let Some(n) = only {
            if selected.is_empty() {
                return Err(StartError::NoSuchDriver {
                    policy: policy.source.display().to_string(),
                    driver: n.to_owned(),
                });
            }
        }
        let max_memory = selected
            .iter()
            .map(|d| d.limits.memory_bytes)
            .max()
            .unwrap_or(64 << 20);
        // One pooled instance for every call policy lets run at once.
        let instances = selected.iter().map(|d| d.limits.concurrency).sum();
        let engine = DriverEngine::new(max_memory, instances)
            .map_err(|e| StartError::Engine(format!("{e:#}")))?;
        let linker = linker(engine.engine()).map_err(|e| StartError::Engine(format!("{e:#}")))?;
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
        let cache = ArtifactCache::new(&policy.host.cache_dir);
        let mut drivers = BTreeMap::new();
        for d in selected {
            let root = match &d.grants.storage {
                Some(s) => Some(LoadedDriver::open_root(d.name.as_str(), &s.root)?),
                None => None,
            };
            let env = DriverEnv {
                policy: d.clone(),
                root,
                state: state.clone(),
                audit: audit.clone(),
                lvm_groups: Default::default(),
            };
            let loaded = LoadedDriver::load(engine.engine(), &linker, &cache, env)?;
            tracing::info!(driver = %d.name, name = %loaded.info().name, provenance = ?loaded.provenance(), "driver loaded");
            drivers.insert(d.name.to_string(), Arc::new(loaded));
        }
        Ok(Self {
            drivers,
            state,
            audit,
            _engine: engine,
        })
    }

    /// The host's durable store (front ends keep their records in it too).
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// The audit log every driver writes to (`serve` reopens it on SIGHUP).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// A loaded driver by policy name.
    pub fn driver(&self, name: &str) -> Option<&Arc<LoadedDriver>> {
        self.drivers.get(name)
    }

    /// Every loaded driver, by name.
    pub fn drivers(&self) -> impl Iterator<Item = &Arc<LoadedDriver>> {
        self.drivers.values()
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
