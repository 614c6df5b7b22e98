//! `wasmvol serve`: every driver of a policy on its CSI socket and the Flex socket.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};

use wasmvol::csi::registration::KubeletRegistration;
use wasmvol::csi::CsiDriver;
use wasmvol::flex::dispatch::FlexDriver;
use wasmvol::policy::Policy;
use wasmvol::runtime::Runtime;

pub(crate) fn serve(config: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let policy = Policy::load(config)?;
    // Refuse early, before touching any state, if another host serves our sockets.
    for csi in policy.drivers.iter().filter_map(|d| d.csi.as_ref()) {
        wasmvol::unix_socket::ensure_not_served(&csi.socket)?;
    }
    if policy.drivers.iter().any(|d| d.flex.is_some()) {
        wasmvol::unix_socket::ensure_not_served(&policy.host.flex_socket)?;
    }
    wasmvol::unix_socket::ensure_not_served(&policy.host.admin_socket())?;
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
                wasmvol::csi::serve(csi, listener, shutdown).await.map_err(|e| anyhow!("CSI server: {e}"))
            });
            // Registered once the CSI socket answers: kubelet calls it at registration.
            if let Some(registration) = KubeletRegistration::of(&settings) {
                let listener = registration
                    .bind()
                    .with_context(|| format!("driver `{}`: kubelet registration socket", d.name))?;
                tracing::info!(driver = %d.name, socket = %registration.socket().display(), "kubelet registration socket ready");
                sockets.push(registration.socket().to_owned());
                let mut stop = stop_rx.clone();
                servers.spawn(async move {
                    let shutdown = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    registration.serve(listener, shutdown).await.map_err(|e| anyhow!("kubelet registration: {e}"))
                });
            }
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
        {
            let socket = policy.host.admin_socket();
            let listener = wasmvol::unix_socket::bind(&socket, 0o600).context("admin socket")?;
            println!("admin: `wasmvol status --config {}` on {}", config.display(), socket.display());
            sockets.push(socket);
            let admin = Arc::new(wasmvol::admin::Admin::new(&policy, runtime.drivers().cloned().collect()));
            let mut stop = stop_rx.clone();
            servers.spawn(async move {
                wasmvol::admin::serve(admin, listener, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
                Ok(())
            });
        }
        if let Some(at) = &policy.host.http {
            let listener = wasmvol::http::HttpListener::bind(at).await.context("[host] http")?;
            wasmvol::metrics::METRICS.enable();
            if let wasmvol::policy::HttpListen::Unix(path) = at {
                sockets.push(path.clone());
            }
            tracing::info!(at = ?at, "health and metrics endpoint ready");
            let drivers = runtime.drivers().cloned().collect();
            let mut stop = stop_rx.clone();
            servers.spawn(async move {
                wasmvol::http::serve(listener, drivers, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
                Ok(())
            });
        }
        println!(
            "ready: {} driver(s); state {}, audit log {}",
            runtime.drivers().count(),
            policy.host.state_dir.display(),
            policy.host.audit_log.display()
        );
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
        // No new calls are taken; those in flight may run to their
        // deadline (the longest any driver has, and a second to answer),
        // but idle clients that never hang up do not hold the host longer.
        let longest = policy.drivers.iter().map(|d| d.limits.deadline_ms).max().unwrap_or(0);
        let drain = std::time::Duration::from_millis(longest) + std::time::Duration::from_secs(1);
        let drained = async { while servers.join_next().await.is_some() {} };
        if tokio::time::timeout(drain, drained).await.is_err() {
            tracing::warn!(waited_ms = drain.as_millis() as u64, "connections still open at the longest deadline; exiting");
        }
        for s in &sockets {
            let _ = std::fs::remove_file(s);
        }
        // Relaxed host records still in memory reach the store before we exit.
        if let Err(e) = runtime.state().flush() {
            tracing::error!(error = %e, "committing host records at shutdown failed");
        }
        match failed {
            Some(Ok(Err(e))) => Err(e.context("a server failed")),
            Some(Err(e)) => Err(anyhow!("a server panicked: {e}")),
            _ => Ok(()),
        }
    })
}

/// After logrotate moved the audit log away, records go to a new file at its path.
pub(crate) fn reopen_audit_log(runtime: &Runtime, path: &Path) {
    match runtime.audit().reopen() {
        Ok(()) => tracing::info!(path = %path.display(), "audit log reopened"),
        Err(e) => tracing::error!(
            path = %path.display(),
            error = %e,
            "cannot reopen the audit log; records still go to the file open before"
        ),
    }
}
