//! On-disk cache of compiled components, keyed by the component's digest and
//! the engine's compatibility hash, so a restart loads instead of compiling.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

use crate::digest::Sha256Digest;

/// Where compiled components are kept.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

/// Whether a component came from the cache or was compiled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Loaded from a previous compilation.
    Cached,
    /// Compiled now (and stored for next time).
    Compiled,
}

impl ArtifactCache {
    /// A cache in `dir` (created, mode 0700, on first store).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn path_for(&self, engine: &Engine, digest: &Sha256Digest) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.dir
            .join(format!("{}-{:016x}.cwasm", digest.to_hex(), h.finish()))
    }

    /// The compiled component for `bytes` (whose digest is `digest`).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &Sha256Digest,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, Provenance)> {
        let path = self.path_for(engine, digest);
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` into a
            // directory only the host (root) can write (created 0700 below),
            // under a name keyed by the source digest and engine configuration;
            // wasmtime also checks the header against this engine.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, Provenance::Cached)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "recompiling unusable cached artifact")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled component");
        }
        Ok((component, Provenance::Compiled))
    }

    fn store(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
        std::fs::write(&tmp, component.serialize()?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
