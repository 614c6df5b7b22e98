//! `wasmvol`: the host binary.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use serde_json::json;

use wasmvol::call::Operation;
use wasmvol::capability::imports::{ImportKind, Surface};
use wasmvol::capability::table::Capability;
use wasmvol::csi::CsiDriver;
use wasmvol::digest::Sha256Digest;
use wasmvol::flex::dispatch::FlexDriver;
use wasmvol::policy::{FlexName, Policy};
use wasmvol::runtime::artifact_cache::ArtifactCache;
use wasmvol::runtime::driver::{component_shape_problem, read_pinned};
use wasmvol::runtime::engine::DriverEngine;
use wasmvol::runtime::Runtime;

/// Run Kubernetes storage drivers as sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "wasmvol", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load every driver of a policy and serve them.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show a component's imports and exports and the grants it would need.
    Inspect {
        component: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// For each driver of a policy: pinned digest, imports, grants, unused and missing grants.
    Audit {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Install or remove the FlexVolume shim for a driver.
    Flex {
        #[command(subcommand)]
        command: FlexCommand,
    },
    /// Call one export of a driver by hand and print its answer as JSON.
    Call {
        #[arg(long)]
        config: PathBuf,
        driver: String,
        /// e.g. create-volume, node-publish, list-snapshots
        operation: String,
        /// The request as JSON (field names as in the WIT records, snake_case).
        #[arg(long, default_value = "{}")]
        request: String,
        /// Request id for logs and the audit trail.
        #[arg(long, default_value = "cli")]
        request_id: String,
    },
}

#[derive(Subcommand)]
enum FlexCommand {
    /// Install the shim as <plugin dir>/<vendor~name>/<name> (atomically).
    Install {
        /// The FlexVolume driver name, vendor/name.
        #[arg(long)]
        driver: String,
        #[arg(long, default_value = wasmvol::flex::install::DEFAULT_PLUGIN_DIR)]
        plugin_dir: PathBuf,
        /// The host's Flex socket the shim will call.
        #[arg(long, default_value = wasmvol_flex::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// The shim binary to install (default: wasmvol-flex beside this program).
        #[arg(long)]
        shim: Option<PathBuf>,
    },
    /// Remove an installed shim.
    Uninstall {
        #[arg(long)]
        driver: String,
        #[arg(long, default_value = wasmvol::flex::install::DEFAULT_PLUGIN_DIR)]
        plugin_dir: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        // Like any Unix filter: a closed pipe (`wasmvol inspect x | head`) ends
        // us quietly. Never for `serve`: a client hanging up must not kill the host.
        // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default_filter = match cli.command {
        // Every allowed capability use is in the audit log file already;
        // on stderr by default only denials, which someone should see.
        Command::Serve { .. } => "info,wasmvol::audit=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(cli) {
        eprintln!("wasmvol: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// An error chain on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Inspect { component, json } => inspect(&component, json),
        Command::Audit { config, json } => audit(&config, json),
        Command::Flex { command } => flex(command),
        Command::Call {
            config,
            driver,
            operation,
            request,
            request_id,
        } => {
            let policy = Policy::load(&config)?;
            let request: serde_json::Value = serde_json::from_str(&request)
                .map_err(|e| anyhow!("--request is not JSON: {e}"))?;
            let op = Operation::from_json(&operation, request).map_err(|e| anyhow!(e))?;
            let runtime = Runtime::start(&policy, Some(&driver))?;
            let outcome = runtime.call(&driver, &request_id, op)?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            Ok(())
        }
    }
}

fn serve(config: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let policy = Policy::load(config)?;
    // Refuse early, before touching any state, if another host serves our sockets.
    for csi in policy.drivers.iter().filter_map(|d| d.csi.as_ref()) {
        wasmvol::unix_socket::ensure_not_served(&csi.socket)?;
    }
    if policy.drivers.iter().any(|d| d.flex.is_some()) {
        wasmvol::unix_socket::ensure_not_served(&policy.host.flex_socket)?;
    }
    let runtime = Runtime::start(&policy, None)?;
    // Driver calls run in place on a worker while one stays free (see SyncCalls):
    // a few more workers than cores keep several calls in place at once.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let sync_calls = Arc::new(wasmvol::runtime::sync_calls::SyncCalls::for_workers(
        workers,
    ));
    rt.block_on(async {
        // Registered before the sockets open: from then on SIGHUP (logrotate's
        // signal) reopens the audit log instead of ending the host.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut servers = tokio::task::JoinSet::new();
        let mut sockets = Vec::new();
        for d in &policy.drivers {
            let Some(settings) = d.csi.clone() else { continue };
            let loaded = runtime.driver(d.name.as_str()).expect("loaded").clone();
            let listener = wasmvol::unix_socket::bind(&settings.socket, settings.socket_mode)
                .with_context(|| format!("driver `{}`: CSI socket", d.name))?;
            let csi = Arc::new(CsiDriver::new(loaded, settings.clone(), runtime.state().clone(), sync_calls.clone()));
            println!("csi: driver `{}` as {} on {}", d.name, settings.name.as_str(), settings.socket.display());
            tracing::info!(driver = %d.name, csi_name = settings.name.as_str(), socket = %settings.socket.display(), "CSI socket ready");
            sockets.push(settings.socket.clone());
            let mut stop = stop_rx.clone();
            servers.spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                wasmvol::csi::serve(csi, listener, shutdown).await
            });
        }
        let flex: wasmvol::flex::FlexDrivers = policy
            .drivers
            .iter()
            .filter_map(|d| {
                let name = d.flex.clone()?;
                let loaded = runtime.driver(d.name.as_str()).expect("loaded").clone();
                let records = wasmvol::store::records::HostRecords::new(runtime.state().clone(), "flex", d.name.as_str());
                let staging = policy.host.state_dir.join("flex-staging").join(d.name.as_str());
                Some((name.full(), Arc::new(FlexDriver::new(loaded, name, records, staging))))
            })
            .collect();
        if !flex.is_empty() {
            let socket = &policy.host.flex_socket;
            let listener = wasmvol::unix_socket::bind(socket, 0o660).context("Flex socket")?;
            let names: Vec<&String> = flex.keys().collect();
            println!("flex: drivers {names:?} on {}", socket.display());
            tracing::info!(socket = %socket.display(), "Flex socket ready");
            sockets.push(socket.clone());
            let mut stop = stop_rx.clone();
            let drivers = Arc::new(flex);
            servers.spawn(async move {
                wasmvol::flex::serve(drivers, listener, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
                Ok(())
            });
        }
        tracing::info!(
            drivers = runtime.drivers().count(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "wasmvol ready"
        );
        let failed = loop {
            tokio::select! {
                _ = interrupt.recv() => break None,
                _ = term.recv() => break None,
                _ = hangup.recv() => reopen_audit_log(&runtime, &policy.host.audit_log),
                Some(done) = servers.join_next() => break Some(done),
            }
        };
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        // Let in-flight calls finish, but do not wait on idle clients forever.
        let drained = async { while servers.join_next().await.is_some() {} };
        if tokio::time::timeout(std::time::Duration::from_secs(5), drained).await.is_err() {
            tracing::warn!("connections still open after 5 s; exiting");
        }
        for s in &sockets {
            let _ = std::fs::remove_file(s);
        }
        // Relaxed host records still in memory reach the store before we exit.
        if let Err(e) = runtime.state().flush() {
            tracing::error!(error = %e, "committing host records at shutdown failed");
        }
        match failed {
            Some(Ok(Err(e))) => Err(anyhow!("CSI server failed: {e}")),
            Some(Err(e)) => Err(anyhow!("CSI server panicked: {e}")),
            _ => Ok(()),
        }
    })
}

/// After logrotate moved the audit log away, records go to a new file at its path.
fn reopen_audit_log(runtime: &Runtime, path: &Path) {
    match runtime.audit().reopen() {
        Ok(()) => tracing::info!(path = %path.display(), "audit log reopened"),
        Err(e) => tracing::error!(
            path = %path.display(),
            error = %e,
            "cannot reopen the audit log; records still go to the file open before"
        ),
    }
}

fn flex(command: FlexCommand) -> anyhow::Result<()> {
    match command {
        FlexCommand::Install {
            driver,
            plugin_dir,
            socket,
            shim,
        } => {
            let name = FlexName::parse(&driver).map_err(|e| anyhow!("--driver: {e}"))?;
            let shim = match shim {
                Some(s) => s,
                None => std::env::current_exe()?
                    .parent()
                    .map(|d| d.join("wasmvol-flex"))
                    .ok_or_else(|| anyhow!("cannot locate wasmvol-flex; pass --shim"))?,
            };
            let dest = wasmvol::flex::install::install(&shim, &plugin_dir, &name, &socket)?;
            println!("installed {} (calls {})", dest.display(), socket.display());
            Ok(())
        }
        FlexCommand::Uninstall { driver, plugin_dir } => {
            let name = FlexName::parse(&driver).map_err(|e| anyhow!("--driver: {e}"))?;
            Ok(wasmvol::flex::install::uninstall(&plugin_dir, &name)?)
        }
    }
}

/// An engine to compile and inspect components on; it runs no calls.
fn engine() -> anyhow::Result<DriverEngine> {
    DriverEngine::new(64 << 20, 1).map_err(|e| anyhow!("{e:#}"))
}

fn inspect(path: &Path, as_json: bool) -> anyhow::Result<()> {
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
fn kind_label(k: ImportKind) -> &'static str {
    match k {
        ImportKind::Unknown => "REFUSED",
        k => k.label(),
    }
}

fn audit(config: &Path, as_json: bool) -> anyhow::Result<()> {
    let policy = Policy::load(config)?;
    let engine = engine()?;
    let cache = ArtifactCache::new(&policy.host.cache_dir);
    let mut reports = Vec::new();
    for d in &policy.drivers {
        let grants = &d.grants;
        let granted: Vec<&str> = Capability::granted(grants)
            .into_iter()
            .map(Capability::name)
            .collect();
        let report = match read_pinned(d.name.as_str(), &d.component, &d.sha256) {
            Err(e) => {
                json!({"driver": d.name.as_str(), "sha256": d.sha256.to_hex(), "error": e.to_string(), "granted": granted})
            }
            Ok(bytes) => {
                let (component, _) = cache
                    .load_or_compile(engine.engine(), &d.sha256, &bytes)
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
                json!({
                    "driver": d.name.as_str(), "component": d.component, "sha256": d.sha256.to_hex(),
                    "imports": surface.imports.iter().map(|i| &i.name).collect::<Vec<_>>(),
                    "granted": granted, "granted_but_unused": unused, "imported_but_not_granted": missing,
                    "storage_root": grants.storage.as_ref().map(|s| &s.root),
                    "fs_types": grants.fs_types, "mount_options": grants.mount_options,
                    "state_quota_bytes": grants.state_quota_bytes, "limits": {
                        "memory_bytes": d.limits.memory_bytes, "deadline_ms": d.limits.deadline_ms, "concurrency": d.limits.concurrency,
                    },
                })
            }
        };
        reports.push(report);
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
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
    }
    Ok(())
}
