//! The runtime: every driver of a policy, loaded on one engine, sharing the
//! state store and the audit log.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use wasmtime::component::{HasSelf, Linker};

use crate::artifact_cache::ArtifactCache;
use crate::audit::AuditLog;
use crate::bindings::VolumeDriver;
use crate::call::{CallError, Operation, Outcome};
use crate::context::{CallContext, DriverEnv};
use crate::driver::LoadedDriver;
use crate::engine::DriverEngine;
use crate::policy::Policy;
use crate::state_store::StateStore;

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

impl Runtime {
    /// Loads the drivers of `policy` (only `only`, when given). Any driver
    /// that fails its checks stops the start with an error naming it.
    pub fn start(policy: &Policy, only: Option<&str>) -> anyhow::Result<Self> {
        let selected: Vec<_> = policy
            .drivers
            .iter()
            .filter(|d| only.is_none_or(|n| d.name.as_str() == n))
            .collect();
        if let Some(n) = only {
            anyhow::ensure!(
                !selected.is_empty(),
                "{}: no driver named `{n}`",
                policy.source.display()
            );
        }
        let max_memory = selected
            .iter()
            .map(|d| d.limits.memory_bytes)
            .max()
            .unwrap_or(64 << 20);
        // One pooled instance for every call policy lets run at once.
        let instances = selected.iter().map(|d| d.limits.concurrency).sum();
        let engine =
            DriverEngine::new(max_memory, instances).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let linker = linker(engine.engine()).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let state = Arc::new(
            StateStore::open(&policy.host.state_dir.join("state.redb"))
                .with_context(|| format!("state store in {}", policy.host.state_dir.display()))?,
        );
        let audit = Arc::new(
            AuditLog::open(&policy.host.audit_log)
                .with_context(|| format!("audit log {}", policy.host.audit_log.display()))?,
        );
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
