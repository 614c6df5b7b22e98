//! The wasmtime engine every driver runs on: pooling allocator, epoch
//! deadlines, and a ticker thread that advances the epoch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; call deadlines are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Bytes of each pooled memory kept resident between calls.
const RESIDENT_BYTES: usize = 1 << 20;

/// The most instances one host pools: the sum of its drivers' concurrency
/// limits may not exceed it (each call in flight holds one instance). It
/// bounds the address space the pool reserves (two linear memories of up
/// to 4 GiB plus guard pages per instance: ~8 TiB at this size, reserved,
/// not committed).
pub const MAX_POOLED_INSTANCES: u32 = 1024;

/// The engine plus the thread that ticks its epoch; stops the thread on drop.
pub struct DriverEngine {
    engine: Engine,
    max_memory_bytes: u64,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl DriverEngine {
    /// Builds an engine whose pool holds `calls` live instances (the calls
    /// in flight that policy allows, at most [`MAX_POOLED_INSTANCES`]) of up
    /// to `max_memory_bytes` each, plus one for a load's type check, which
    /// runs outside any call slot: a reload that loads a driver's next
    /// version onto this engine must not take an instance from its calls.
    pub fn new(max_memory_bytes: u64, calls: u32) -> wasmtime::Result<Self> {
        let instances = calls.clamp(1, MAX_POOLED_INSTANCES) + 1;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(instances)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(max_memory_bytes as usize)
            // Calls are short and frequent: keep the first pages of reused
            // slots resident and reset them in place instead of faulting
            // them back in on every call.
            .linear_memory_keep_resident(RESIDENT_BYTES)
            .table_keep_resident(RESIDENT_BYTES / 16)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .wasm_component_model(true)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (weak, stop) = (engine.weak(), stop.clone());
            std::thread::Builder::new()
                .name("wasmvol-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match weak.upgrade() {
                            Some(e) => e.increment_epoch(),
                            None => break,
                        }
                    }
                })?
        };
        Ok(Self {
            engine,
            max_memory_bytes,
            stop,
            ticker: Some(ticker),
        })
    }

    /// The engine drivers compile and run on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The largest linear memory its pool holds.
    pub fn max_memory_bytes(&self) -> u64 {
        self.max_memory_bytes
    }

    /// Epoch ticks that make up a deadline (at least one).
    pub fn ticks_for(deadline: Duration) -> u64 {
        (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
    }
}

impl Drop for DriverEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiled artifacts are cached by the engine's compatibility hash; a
    /// pool sized from another policy must still find them.
    #[test]
    fn the_pool_size_does_not_change_the_artifact_key() {
        let small = DriverEngine::new(64 << 20, 1).unwrap();
        let large = DriverEngine::new(64 << 20, MAX_POOLED_INSTANCES).unwrap();
        let key = |e: &DriverEngine| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            e.engine().precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        assert_eq!(key(&small), key(&large));
    }
}
