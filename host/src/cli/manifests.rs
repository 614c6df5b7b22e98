//! `wasmvol manifests`: the Kubernetes objects for a policy, on stdout.
//!
//! Each driver's features come from the driver itself (its identity
//! answer), so the component must be at hand: the policy's path, or the
//! file of that name in `--components` when the policy names the paths
//! inside the image (the ConfigMap's policy is then pinned to those files'
//! digests: they are what ships). The drivers are loaded into a throwaway host (state,
//! cache and storage roots in a temporary directory): nothing on this
//! machine is touched.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use wasmvol::digest::Sha256Digest;
use wasmvol::manifests::{objects, to_yaml, Driver, Options};
use wasmvol::policy::file::PolicyFile;
use wasmvol::policy::Policy;
use wasmvol::runtime::Runtime;

pub(crate) fn manifests(
    config: &Path,
    image: &str,
    namespace: &str,
    components: Option<&Path>,
    as_json: bool,
) -> anyhow::Result<()> {
    let policy = Policy::load(config)?;
    let mut policy_text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let scratch = tempfile_dir()?;
    let mut local = policy.clone();
    local.host.state_dir = scratch.join("state");
    local.host.cache_dir = scratch.join("cache");
    local.host.audit_log = scratch.join("audit.jsonl");
    std::fs::create_dir_all(&local.host.state_dir)?;
    if let Some(dir) = components {
        // The components shipped with the manifests: the policy the
        // ConfigMap carries is pinned to them.
        let mut file: PolicyFile = toml::from_str(&policy_text)
            .with_context(|| format!("reading {}", config.display()))?;
        for (entry, d) in file.drivers.iter_mut().zip(&mut local.drivers) {
            let name = d
                .component
                .file_name()
                .ok_or_else(|| anyhow!("driver `{}`: component path has no file name", d.name))?;
            d.component = dir.join(name);
            let bytes = std::fs::read(&d.component)
                .with_context(|| format!("driver `{}`: {}", d.name, d.component.display()))?;
            let digest = Sha256Digest::of(&bytes);
            d.pin.sha256 = Some(digest);
            entry.sha256 = Some(digest.to_hex());
        }
        policy_text = file.to_toml();
    }
    for d in &mut local.drivers {
        if let Some(s) = &mut d.grants.storage {
            s.root = scratch.join("roots").join(d.name.as_str());
            std::fs::create_dir_all(&s.root)?;
        }
    }
    let runtime = Runtime::start(&local, None).map_err(|e| anyhow!("loading the drivers: {e}"));
    let result = runtime.and_then(|runtime| {
        let infos: Vec<_> = policy
            .drivers
            .iter()
            .map(|d| {
                let loaded = runtime
                    .driver(d.name.as_str())
                    .ok_or_else(|| anyhow!("driver `{}` did not load", d.name))?;
                Ok((d, loaded.info().clone()))
            })
            .collect::<anyhow::Result<_>>()?;
        let drivers: Vec<Driver<'_>> = infos
            .iter()
            .map(|(policy, info)| Driver { policy, info })
            .collect();
        let options = Options {
            image: image.to_owned(),
            namespace: namespace.to_owned(),
            policy_text,
        };
        let objects = objects(&policy, &drivers, &options);
        if as_json {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else {
            print!("{}", to_yaml(&objects));
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// A private temporary directory (removed by the caller).
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("wasmvol-manifests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
