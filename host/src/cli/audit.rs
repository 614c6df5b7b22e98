//! `wasmvol audit`: per driver, what policy grants beside what the component imports.

use std::path::Path;

use anyhow::anyhow;
use serde_json::json;

use wasmvol::capability::imports::Surface;
use wasmvol::capability::table::Capability;
use wasmvol::policy::Policy;
use wasmvol::runtime::artifact_cache::ArtifactCache;
use wasmvol::runtime::driver::read_pinned;

use super::inspect::engine;

/// Grants the host cannot honour for a driver that imports `used`: they
/// name something no interface it imports would ever use.
fn cannot_honour(grants: &wasmvol::policy::Grants, used: &[&str]) -> Vec<String> {
    // Only the device interface makes and mounts filesystems by type (an
    // lvm driver mounts its volumes through it too).
    let mounts_by_type = used.contains(&Capability::Device.name());
    let mut out = Vec::new();
    if !mounts_by_type {
        if !grants.fs_types.is_empty() {
            out.push(
                "fs_types: the driver does not import device, which alone makes and mounts filesystems by type"
                    .to_owned(),
            );
        }
        if !grants.mount_options.is_empty() {
            out.push(
                "mount_options: the driver does not import device, which alone mounts with them"
                    .to_owned(),
            );
        }
    }
    out
}

/// Prints the audit of every driver; `Ok(false)` when `strict` and a driver
/// has a problem `serve` would refuse or a grant it cannot honour.
pub(crate) fn audit(
    config: &Path,
    as_json: bool,
    strict: bool,
    log: Option<&Path>,
    since: Option<std::time::Duration>,
) -> anyhow::Result<bool> {
    let policy = Policy::load(config)?;
    let usage = match log {
        None => None,
        Some(log) => {
            let since = since.map(|d| wasmvol::audit::rfc3339(std::time::SystemTime::now() - d));
            Some(
                wasmvol::grant_usage::LogUse::read(log, since.as_deref())
                    .map_err(|e| anyhow!("audit log {}: {e}", log.display()))?,
            )
        }
    };
    let engine = engine()?;
    let cache = ArtifactCache::new(&policy.host.cache_dir);
    let mut reports = Vec::new();
    for d in &policy.drivers {
        let grants = &d.grants;
        let granted: Vec<&str> = Capability::granted(grants)
            .into_iter()
            .map(Capability::name)
            .collect();
        let mut report = match read_pinned(d) {
            Err(e) => {
                json!({"driver": d.name.as_str(), "sha256": d.pin.sha256.map(|s| s.to_hex()), "error": e.to_string(), "granted": granted})
            }
            Ok((bytes, digest)) => {
                let (component, _) = cache
                    .load_or_compile(engine.engine(), &digest, &bytes)
                    .map_err(|e| anyhow!("driver `{}`: {e:#}", d.name))?;
                let surface = Surface::of(engine.engine(), &component);
                let used: Vec<&str> = surface
                    .imports
                    .iter()
                    .filter(|i| !i.functions.is_empty())
                    .map(|i| i.kind.label())
                    .collect();
                // Secrets are not an import: a grant of them is never "unused" by this measure.
                let unused: Vec<&str> = granted
                    .iter()
                    .copied()
                    .filter(|g| *g != Capability::Secrets.name() && !used.contains(g))
                    .collect();
                let missing: Vec<&str> =
                    surface.ungranted(grants).map(|i| i.name.as_str()).collect();
                let cannot = cannot_honour(grants, &used);
                json!({
                    "driver": d.name.as_str(), "component": d.component, "sha256": digest.to_hex(),
                    "signed_by": d.pin.signed_by.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "imports": surface.imports.iter().map(|i| &i.name).collect::<Vec<_>>(),
                    "granted": granted, "granted_but_unused": unused, "imported_but_not_granted": missing,
                    "granted_but_cannot_be_honoured": cannot,
                    "storage_root": grants.storage.as_ref().map(|s| &s.root),
                    "fs_types": grants.fs_types, "mount_options": grants.mount_options,
                    "state_quota_bytes": grants.state_quota_bytes, "limits": {
                        "memory_bytes": d.limits.memory_bytes, "deadline_ms": d.limits.deadline_ms, "concurrency": d.limits.concurrency,
                    },
                })
            }
        };
        if let Some(usage) = &usage {
            let used = usage.drivers.get(d.name.as_str());
            report["used"] = serde_json::to_value(used.cloned().unwrap_or_default())?;
            report["wider_than_used"] = json!(wasmvol::grant_usage::wider_than_used(grants, used));
        }
        reports.push(report);
    }
    let clean = reports.iter().all(|r| {
        r.get("error").is_none()
            && ["imported_but_not_granted", "granted_but_cannot_be_honoured"]
                .iter()
                .all(|k| r[*k].as_array().is_none_or(|a| a.is_empty()))
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(clean || !strict);
    }
    if let Some(u) = &usage {
        println!(
            "audit log: {} records read, {} unreadable lines\n",
            u.records, u.unreadable
        );
    }
    for r in &reports {
        println!("driver {}", r["driver"].as_str().unwrap_or("?"));
        println!(
            "  sha256                    {}",
            r["sha256"].as_str().unwrap_or("")
        );
        if let Some(e) = r.get("error") {
            println!("  ERROR                     {}", e.as_str().unwrap_or(""));
            continue;
        }
        for (label, key) in [
            ("imports", "imports"),
            ("granted", "granted"),
            ("granted but unused", "granted_but_unused"),
            ("imported but not granted", "imported_but_not_granted"),
            ("cannot be honoured", "granted_but_cannot_be_honoured"),
        ] {
            let items: Vec<String> = r[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "  {label:<25} {}",
                if items.is_empty() {
                    "-".into()
                } else {
                    items.join(", ")
                }
            );
        }
        if let Some(ops) = r["used"]["operations"].as_object() {
            println!("  used (allowed/denied, first .. last):");
            for (op, u) in ops {
                println!(
                    "    {op:<32} {}/{}  {} .. {}",
                    u["allowed"],
                    u["denied"],
                    u["first"].as_str().unwrap_or(""),
                    u["last"].as_str().unwrap_or("")
                );
            }
            if ops.is_empty() {
                println!("    -");
            }
        }
        if let Some(wider) = r["wider_than_used"].as_array() {
            println!("  wider than used:");
            for w in wider {
                println!("    {}", w.as_str().unwrap_or(""));
            }
            if wider.is_empty() {
                println!("    -");
            }
        }
    }
    if strict && !clean {
        eprintln!(
            "wasmvol audit --strict: a driver above would be refused, or has a grant it cannot use"
        );
    }
    Ok(clean || !strict)
}
