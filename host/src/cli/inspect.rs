//! `wasmvol inspect`: a component's imports and exports, and the grants they need.

use std::path::Path;

use anyhow::{anyhow, Context};
use serde_json::json;

use wasmvol::capability::imports::{ImportKind, Surface};
use wasmvol::digest::Sha256Digest;
use wasmvol::runtime::driver::component_shape_problem;
use wasmvol::runtime::engine::DriverEngine;

/// An engine to compile and inspect components on; it runs no calls.
pub(crate) fn engine() -> anyhow::Result<DriverEngine> {
    DriverEngine::new(64 << 20, 1).map_err(|e| anyhow!("{e:#}"))
}

pub(crate) fn inspect(path: &Path, as_json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    if let Some(problem) = component_shape_problem(&bytes) {
        return Err(anyhow!(
            "{}: not a WebAssembly component: {problem}",
            path.display()
        ));
    }
    let engine = engine()?;
    let component = wasmtime::component::Component::new(engine.engine(), &bytes)
        .map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    let surface = Surface::of(engine.engine(), &component);
    let digest = Sha256Digest::of(&bytes);
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "component": path, "sha256": digest.to_hex(), "imports": surface.imports, "exports": surface.exports,
            }))?
        );
        return Ok(());
    }
    println!("component {}\nsha256    {digest}\nimports:", path.display());
    for i in &surface.imports {
        let needs = if i.functions.is_empty() && i.kind != ImportKind::Unknown {
            "(types only)"
        } else {
            i.grant
        };
        println!(
            "  {:<40} {:<8} needs {:<26} calls {}",
            i.name,
            kind_label(i.kind),
            needs,
            i.functions.join(", ")
        );
    }
    println!("exports:");
    for e in &surface.exports {
        println!("  {e}");
    }
    Ok(())
}

/// An import's kind as `inspect` prints it; unknown imports are what refuses a component.
pub(crate) fn kind_label(k: ImportKind) -> &'static str {
    match k {
        ImportKind::Unknown => "REFUSED",
        k => k.label(),
    }
}
