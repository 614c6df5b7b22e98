//! On-disk cache of compiled components, keyed by the component's digest and
//! the engine's compatibility hash, so a restart loads instead of compiling.
//!
//! A compiled artifact is native code that wasmtime loads without checking
//! it (`Component::deserialize` is `unsafe` for that reason), so the host
//! loads only what it can prove it wrote, from that exact component, for
//! this engine: each artifact carries an HMAC-SHA256 under a host-local key
//! (`<cache dir>.key`, 32 random bytes, mode 0600, beside the cache and not
//! in it) over the component's digest, the engine's hash and the artifact.
//! Anything else in the cache (tampered, truncated, another component's
//! artifact under this one's name, written by someone without the key) is
//! logged and recompiled over. The cache directory is 0700, its files 0600.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::digest::Sha256Digest;

/// Bytes of the MAC an artifact file starts with.
const MAC_LEN: usize = 32;

/// Where compiled components are kept, and the key that proves them ours.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    key_path: PathBuf,
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
    /// A cache in `dir` (created, mode 0700, on first store), its key beside it.
    pub fn new(dir: &Path) -> Self {
        let mut key = dir.as_os_str().to_owned();
        key.push(".key");
        Self {
            dir: dir.to_owned(),
            key_path: PathBuf::from(key),
        }
    }

    fn engine_hash(engine: &Engine) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        h.finish()
    }

    fn path_for(&self, engine: &Engine, digest: &Sha256Digest) -> PathBuf {
        self.dir.join(format!(
            "{}-{:016x}.cwasm",
            digest.to_hex(),
            Self::engine_hash(engine)
        ))
    }

    /// The host's key: read, or made (0600) when there is none yet.
    fn key(&self) -> std::io::Result<Vec<u8>> {
        match std::fs::read(&self.key_path) {
            Ok(k) if k.len() == 32 => return Ok(k),
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{}: not a 32-byte key",
                    self.key_path.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut key = vec![0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
        if let Some(parent) = self.key_path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        // create_new: of two hosts making it at once, one key wins and the
        // other host reads it.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.key_path)
        {
            Ok(mut f) => {
                f.write_all(&key)?;
                f.sync_all()?;
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::read(&self.key_path)
            }
            Err(e) => Err(e),
        }
    }

    fn mac(key: &[u8], digest: &Sha256Digest, engine: u64, artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(digest.to_hex().as_bytes());
        mac.update(&engine.to_be_bytes());
        mac.update(artifact);
        mac
    }

    /// The compiled component for `bytes` (whose digest is `digest`).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &Sha256Digest,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, Provenance)> {
        let path = self.path_for(engine, digest);
        let key = match self.key() {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(key = %self.key_path.display(), error = %e, "no artifact cache key: compiling, not caching");
                None
            }
        };
        if let (Some(key), Ok(file)) = (&key, std::fs::read(&path)) {
            match self.verified(key, engine, digest, &file) {
                Ok(artifact) => {
                    // SAFETY: the artifact carries our MAC over this
                    // component's digest and this engine's hash: this host
                    // wrote it with `Component::serialize` of that component.
                    // wasmtime also checks its header against this engine.
                    match unsafe { Component::deserialize(engine, artifact) } {
                        Ok(c) => return Ok((c, Provenance::Cached)),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "recompiling unusable cached artifact")
                        }
                    }
                }
                Err(why) => {
                    tracing::warn!(path = %path.display(), why, "refusing a cached artifact this host cannot prove it wrote; recompiling")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Some(key) = &key {
            if let Err(e) = self.store(key, engine, digest, &path, &component) {
                tracing::warn!(path = %path.display(), error = %e, "could not cache compiled component");
            }
        }
        Ok((component, Provenance::Compiled))
    }

    /// The artifact in `file` if its MAC is ours for this component and engine.
    fn verified<'a>(
        &self,
        key: &[u8],
        engine: &Engine,
        digest: &Sha256Digest,
        file: &'a [u8],
    ) -> Result<&'a [u8], &'static str> {
        if file.len() <= MAC_LEN {
            return Err("shorter than its MAC");
        }
        let (tag, artifact) = file.split_at(MAC_LEN);
        Self::mac(key, digest, Self::engine_hash(engine), artifact)
            .verify_slice(tag)
            .map_err(|_| "its MAC is not this host's for this component and engine")?;
        Ok(artifact)
    }

    fn store(
        &self,
        key: &[u8],
        engine: &Engine,
        digest: &Sha256Digest,
        path: &Path,
        component: &Component,
    ) -> wasmtime::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let artifact = component.serialize()?;
        let tag = Self::mac(key, digest, Self::engine_hash(engine), &artifact).finalize();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&tag.into_bytes())?;
        f.write_all(&artifact)?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const WAT: &str = r#"(component (core module (func (export "f"))))"#;
    const OTHER_WAT: &str = r#"(component (core module (func (export "g"))))"#;

    fn setup() -> (tempfile::TempDir, Engine, ArtifactCache) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let cache = ArtifactCache::new(&dir.path().join("cache"));
        (dir, engine, cache)
    }

    /// A component (as text: the engine reads WAT) and its digest.
    fn bytes(wat: &str) -> (Vec<u8>, Sha256Digest) {
        let b = wat.as_bytes().to_vec();
        let d = Sha256Digest::of(&b);
        (b, d)
    }

    #[test]
    fn a_second_load_is_cached_and_the_key_and_files_are_root_only() {
        let (dir, engine, cache) = setup();
        let (b, d) = bytes(WAT);
        assert_eq!(
            cache.load_or_compile(&engine, &d, &b).unwrap().1,
            Provenance::Compiled
        );
        assert_eq!(
            cache.load_or_compile(&engine, &d, &b).unwrap().1,
            Provenance::Cached
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("cache.key")), 0o600);
        assert_eq!(mode(&dir.path().join("cache")), 0o700);
        assert_eq!(mode(&cache.path_for(&engine, &d)), 0o600);
    }

    #[test]
    fn a_tampered_or_swapped_artifact_is_refused_and_recompiled() {
        let (_dir, engine, cache) = setup();
        let (b, d) = bytes(WAT);
        let (other, other_d) = bytes(OTHER_WAT);
        cache.load_or_compile(&engine, &d, &b).unwrap();
        cache.load_or_compile(&engine, &other_d, &other).unwrap();
        let path = cache.path_for(&engine, &d);
        // Another component's artifact, MAC and all, under this one's name.
        std::fs::copy(cache.path_for(&engine, &other_d), &path).unwrap();
        let p = cache.load_or_compile(&engine, &d, &b).unwrap().1;
        assert_eq!(p, Provenance::Compiled, "the swapped artifact was loaded");
        // One flipped byte of the artifact.
        let mut file = std::fs::read(&path).unwrap();
        *file.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &file).unwrap();
        assert_eq!(
            cache.load_or_compile(&engine, &d, &b).unwrap().1,
            Provenance::Compiled
        );
        // An artifact wasmtime made, but without this host's MAC.
        let raw = Component::new(&engine, &b).unwrap().serialize().unwrap();
        let mut forged = vec![0u8; MAC_LEN];
        forged.extend_from_slice(&raw);
        std::fs::write(&path, &forged).unwrap();
        assert_eq!(
            cache.load_or_compile(&engine, &d, &b).unwrap().1,
            Provenance::Compiled
        );
        // Each refusal wrote a good one back.
        assert_eq!(
            cache.load_or_compile(&engine, &d, &b).unwrap().1,
            Provenance::Cached
        );
    }

    #[test]
    fn another_hosts_key_proves_nothing_here() {
        let (dir, engine, cache) = setup();
        let (b, d) = bytes(WAT);
        cache.load_or_compile(&engine, &d, &b).unwrap();
        std::fs::write(dir.path().join("cache.key"), [7u8; 32]).unwrap();
        assert_eq!(
            cache.load_or_compile(&engine, &d, &b).unwrap().1,
            Provenance::Compiled
        );
    }
}
