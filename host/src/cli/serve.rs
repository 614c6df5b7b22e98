//! `wasmvol serve`: every driver of a policy on its CSI socket and the Flex
//! socket, reloaded in place on SIGHUP or `wasmvol reload`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use tokio::sync::watch;
use tokio::task::JoinSet;

use wasmvol::bindings::types::Feature;
use wasmvol::csi::registration::KubeletRegistration;
use wasmvol::csi::CsiDriver;
use wasmvol::flex::dispatch::FlexDriver;
use wasmvol::flex::FlexDrivers;
use wasmvol::policy::{CsiSettings, DriverPolicy, Policy};
use wasmvol::runtime::live::LiveDriver;
use wasmvol::runtime::sync_calls::SyncCalls;
use wasmvol::runtime::Runtime;

type Servers = JoinSet<anyhow::Result<()>>;

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
    let runtime = Arc::new(Runtime::start(&policy, None)?);
    forget_unmounted(&runtime, &policy)?;
    // Driver calls run in place on a worker while one stays free (see SyncCalls):
    // a few more workers than cores keep several calls in place at once.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let sync_calls = Arc::new(SyncCalls::for_workers(workers));
    rt.block_on(async {
        // Registered before the sockets open: from then on SIGHUP reopens
        // the audit log (logrotate's signal) and reloads the policy
        // instead of ending the host.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut host = Fronts::new(runtime.clone(), sync_calls, stop_rx.clone());
        // The admin socket first: `wasmvol status` answers once any socket does.
        let mut sockets = Vec::new();
        let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<wasmvol::admin::ReloadAsk>(4);
        {
            let socket = policy.host.admin_socket();
            let listener = wasmvol::unix_socket::bind(&socket, 0o600).context("admin socket")?;
            println!(
                "admin: `wasmvol status --config {}` on {}",
                config.display(),
                socket.display()
            );
            sockets.push(socket);
            let admin = Arc::new(wasmvol::admin::Admin::new(runtime.clone(), reload_tx));
            let mut stop = stop_rx.clone();
            host.servers.spawn(async move {
                wasmvol::admin::serve(admin, listener, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
                Ok(())
            });
        }
        let bound = host.bind_new(&policy, &BTreeMap::new())?;
        host.commit(&policy, bound);
        if let Some(at) = &policy.host.http {
            let listener = wasmvol::http::HttpListener::bind(at)
                .await
                .context("[host] http")?;
            wasmvol::metrics::METRICS.enable();
            if let wasmvol::policy::HttpListen::Unix(path) = at {
                sockets.push(path.clone());
            }
            tracing::info!(at = ?at, "health and metrics endpoint ready");
            let mut stop = stop_rx.clone();
            let runtime = runtime.clone();
            host.servers.spawn(async move {
                wasmvol::http::serve(listener, runtime, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
                Ok(())
            });
        }
        println!(
            "ready: {} driver(s); state {}, audit log {}",
            runtime.drivers().len(),
            policy.host.state_dir.display(),
            policy.host.audit_log.display()
        );
        tracing::info!(
            drivers = runtime.drivers().len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "wasmvol ready"
        );
        let failed = loop {
            tokio::select! {
                _ = interrupt.recv() => break None,
                _ = term.recv() => break None,
                _ = hangup.recv() => {
                    reopen_audit_log(&runtime, &policy.host.audit_log);
                    let _ = host.reload(config).await;
                }
                Some(ask) = reload_rx.recv() => {
                    let _ = ask.send(host.reload(config).await);
                }
                Some(done) = host.servers.join_next() => match done {
                    // A server a reload stopped.
                    Ok(Ok(())) => continue,
                    other => break Some(other),
                },
            }
        };
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        // No new calls are taken; those in flight may run to their
        // deadline (the longest any driver has, and a second to answer),
        // but idle clients that never hang up do not hold the host longer.
        let policy = runtime.policy();
        let longest = policy
            .drivers
            .iter()
            .map(|d| d.limits.deadline_ms)
            .max()
            .unwrap_or(0);
        let drain = std::time::Duration::from_millis(longest) + std::time::Duration::from_secs(1);
        let mut servers = std::mem::take(&mut host.servers);
        let drained = async { while servers.join_next().await.is_some() {} };
        if tokio::time::timeout(drain, drained).await.is_err() {
            tracing::warn!(
                waited_ms = drain.as_millis() as u64,
                "connections still open at the longest deadline; exiting"
            );
        }
        sockets.extend(host.sockets());
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

/// The CSI and Flex front ends of the drivers being served, kept in step
/// with the runtime across reloads.
struct Fronts {
    runtime: Arc<Runtime>,
    sync_calls: Arc<SyncCalls>,
    stop_all: watch::Receiver<bool>,
    servers: Servers,
    csi: BTreeMap<String, CsiFront>,
    flex: Option<FlexFront>,
}

/// One driver's CSI server (and registration with kubelet).
struct CsiFront {
    settings: CsiSettings,
    /// The features the server's services were chosen by.
    features: Vec<Feature>,
    live: Arc<LiveDriver>,
    driver: Arc<CsiDriver>,
    /// Ends this server alone (a reload that changed or removed it).
    stop: watch::Sender<bool>,
}

/// The Flex socket's server and the drivers it answers for.
struct FlexFront {
    socket: PathBuf,
    drivers: watch::Sender<Arc<FlexDrivers>>,
}

/// Listeners bound for a reload before anything is swapped: a socket that
/// cannot be made refuses the reload while every driver serves on.
#[derive(Default)]
struct Bound {
    csi: BTreeMap<String, Listeners>,
    flex: Option<tokio::net::UnixListener>,
}

/// A CSI socket and its registration socket; `None` where the path is one
/// this host serves now, taken over only once the reload commits.
struct Listeners {
    csi: Option<tokio::net::UnixListener>,
    registration: Option<Option<tokio::net::UnixListener>>,
}

impl Fronts {
    fn new(
        runtime: Arc<Runtime>,
        sync_calls: Arc<SyncCalls>,
        stop_all: watch::Receiver<bool>,
    ) -> Self {
        Self {
            runtime,
            sync_calls,
            stop_all,
            servers: JoinSet::new(),
            csi: BTreeMap::new(),
            flex: None,
        }
    }

    /// Every socket path the front ends serve (removed at shutdown).
    fn sockets(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .csi
            .values()
            .flat_map(|f| csi_paths(&f.settings))
            .collect();
        paths.extend(self.flex.as_ref().map(|f| f.socket.clone()));
        paths
    }

    /// Re-reads `config` and, if every new or changed driver loads and every
    /// new socket binds, serves it; otherwise serves on as before. Either way
    /// the outcome is logged and kept for `/healthz` and `wasmvol status`.
    async fn reload(&mut self, config: &Path) -> Result<String, String> {
        let started = std::time::Instant::now();
        let outcome = self.try_reload(config).await;
        match &outcome {
            Ok(changed) => {
                tracing::info!(elapsed_ms = started.elapsed().as_secs_f64() * 1e3, %changed, "reloaded")
            }
            Err(why) => {
                tracing::error!(reason = %why, "reload refused; every driver serves on as before")
            }
        }
        self.runtime.note_reload(outcome.clone());
        outcome
    }

    async fn try_reload(&mut self, config: &Path) -> Result<String, String> {
        let next = Policy::load(config).map_err(|e| format!("{e:#}"))?;
        let runtime = self.runtime.clone();
        let prepare = next.clone();
        let prepared = tokio::task::spawn_blocking(move || runtime.prepare(&prepare))
            .await
            .map_err(|e| format!("loading panicked: {e}"))?
            .map_err(|e| e.to_string())?;
        let now: BTreeMap<String, CsiSettings> = self
            .csi
            .iter()
            .map(|(n, f)| (n.clone(), f.settings.clone()))
            .collect();
        let bound = self.bind_new(&next, &now).map_err(|e| format!("{e:#}"))?;
        let changed = self.runtime.commit(prepared).map_err(|e| e.to_string())?;
        self.commit(&next, bound);
        Ok(changed.to_string())
    }

    /// Binds the sockets `policy` adds (paths not served now); `now` is
    /// each CSI driver's settings as served.
    fn bind_new(
        &self,
        policy: &Policy,
        now: &BTreeMap<String, CsiSettings>,
    ) -> anyhow::Result<Bound> {
        let served: Vec<PathBuf> = now.values().flat_map(csi_paths).collect();
        let mut bound = Bound::default();
        for d in &policy.drivers {
            let Some(settings) = &d.csi else { continue };
            if now.get(d.name.as_str()) == Some(settings) {
                continue;
            }
            let fresh =
                |path: &Path, mode: u32| -> anyhow::Result<Option<tokio::net::UnixListener>> {
                    if served.iter().any(|p| p == path) {
                        return Ok(None);
                    }
                    Ok(Some(wasmvol::unix_socket::bind(path, mode)?))
                };
            let csi = fresh(&settings.socket, settings.socket_mode)
                .with_context(|| format!("driver `{}`: CSI socket", d.name))?;
            let registration = match &settings.registration_socket {
                Some(path) => Some(fresh(path, 0o600).with_context(|| {
                    format!("driver `{}`: kubelet registration socket", d.name)
                })?),
                None => None,
            };
            bound
                .csi
                .insert(d.name.to_string(), Listeners { csi, registration });
        }
        if self.flex.is_none() && policy.drivers.iter().any(|d| d.flex.is_some()) {
            let socket = &policy.host.flex_socket;
            bound.flex = Some(wasmvol::unix_socket::bind(socket, 0o660).context("Flex socket")?);
        }
        Ok(bound)
    }

    /// Brings the front ends in step with `policy`, whose drivers the
    /// runtime serves now: a CSI server whose settings or features changed
    /// is replaced (the new one takes over the socket path; the old one
    /// finishes its calls), a removed driver's server stops, the Flex
    /// socket answers for the new set of drivers. Nothing here fails the
    /// reload: a socket taken over that cannot be made is logged.
    fn commit(&mut self, policy: &Policy, mut bound: Bound) {
        let mut keep = BTreeMap::new();
        for d in &policy.drivers {
            let Some(settings) = d.csi.clone() else {
                continue;
            };
            let live = self
                .runtime
                .live(d.name.as_str())
                .expect("the runtime serves every driver of its policy");
            let features = live.current().info().features.clone();
            let before = self.csi.remove(d.name.as_str());
            match before {
                Some(f)
                    if f.settings == settings
                        && f.features == features
                        && Arc::ptr_eq(&f.live, &live) =>
                {
                    keep.insert(d.name.to_string(), f);
                }
                before => {
                    let listeners = bound.csi.remove(d.name.as_str()).unwrap_or(Listeners {
                        csi: None,
                        registration: None,
                    });
                    match self.start_csi(d, settings, features, live, listeners, before.as_ref()) {
                        Ok(front) => {
                            if let Some(old) = before {
                                self.retire(old, &front.settings);
                            }
                            keep.insert(d.name.to_string(), front);
                        }
                        Err(e) => {
                            tracing::error!(driver = %d.name, error = %format!("{e:#}"), "CSI server not started");
                            if let Some(old) = before {
                                keep.insert(d.name.to_string(), old);
                            }
                        }
                    }
                }
            }
        }
        for (_, removed) in std::mem::replace(&mut self.csi, keep) {
            let settings = removed.settings.clone();
            tracing::info!(
                csi_name = settings.name.as_str(),
                "CSI server of a removed driver stops once its calls end"
            );
            let gone: Vec<PathBuf> = csi_paths(&settings)
                .into_iter()
                .filter(|p| !self.sockets().contains(p))
                .collect();
            let _ = removed.stop.send(true);
            for p in gone {
                let _ = std::fs::remove_file(p);
            }
        }
        self.commit_flex(policy, bound.flex.take());
    }

    /// Stops `old`, replaced by a server with `next` settings, and removes
    /// its socket files the new one does not use.
    fn retire(&self, old: CsiFront, next: &CsiSettings) {
        let _ = old.stop.send(true);
        let kept = csi_paths(next);
        for p in csi_paths(&old.settings) {
            if !kept.contains(&p) {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    fn start_csi(
        &mut self,
        d: &DriverPolicy,
        settings: CsiSettings,
        features: Vec<Feature>,
        live: Arc<LiveDriver>,
        listeners: Listeners,
        before: Option<&CsiFront>,
    ) -> anyhow::Result<CsiFront> {
        let listener = match listeners.csi {
            Some(l) => l,
            None => wasmvol::unix_socket::take_over(&settings.socket, settings.socket_mode)
                .with_context(|| format!("driver `{}`: CSI socket", d.name))?,
        };
        let mut csi = CsiDriver::new(
            live.clone(),
            settings.clone(),
            self.runtime.state().clone(),
            self.sync_calls.clone(),
        );
        if let Some(before) = before {
            csi = csi.succeeding(&before.driver);
        }
        let csi = Arc::new(csi);
        println!(
            "csi: driver `{}` as {} on {}",
            d.name,
            settings.name.as_str(),
            settings.socket.display()
        );
        tracing::info!(driver = %d.name, csi_name = settings.name.as_str(), socket = %settings.socket.display(), "CSI socket ready");
        let (stop, stop_rx) = watch::channel(false);
        let shutdown = self.shutdown(stop_rx.clone());
        let server = csi.clone();
        self.servers.spawn(async move {
            wasmvol::csi::serve(server, listener, shutdown)
                .await
                .map_err(|e| anyhow!("CSI server: {e}"))
        });
        // Registered once the CSI socket answers: kubelet calls it at registration.
        if let Some(registration) = KubeletRegistration::of(&settings) {
            let listener = match listeners.registration.flatten() {
                Some(l) => l,
                None => wasmvol::unix_socket::take_over(registration.socket(), 0o600)
                    .with_context(|| format!("driver `{}`: kubelet registration socket", d.name))?,
            };
            tracing::info!(driver = %d.name, socket = %registration.socket().display(), "kubelet registration socket ready");
            let shutdown = self.shutdown(stop_rx);
            self.servers.spawn(async move {
                registration
                    .serve(listener, shutdown)
                    .await
                    .map_err(|e| anyhow!("kubelet registration: {e}"))
            });
        }
        Ok(CsiFront {
            settings,
            features,
            live,
            driver: csi,
            stop,
        })
    }

    /// Resolves when the host stops or `own` says this server alone stops.
    fn shutdown(
        &self,
        mut own: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut all = self.stop_all.clone();
        async move {
            tokio::select! {
                _ = all.wait_for(|s| *s) => {}
                _ = own.wait_for(|s| *s) => {}
            }
        }
    }

    /// The Flex drivers of `policy`: one kept as it was when its name and
    /// live driver are the same (its volume locks with it).
    fn commit_flex(&mut self, policy: &Policy, listener: Option<tokio::net::UnixListener>) {
        let before: Arc<FlexDrivers> = match &self.flex {
            Some(f) => f.drivers.borrow().clone(),
            None => Arc::default(),
        };
        let drivers: FlexDrivers = policy
            .drivers
            .iter()
            .filter_map(|d| {
                let name = d.flex.clone()?;
                let live = self.runtime.live(d.name.as_str())?;
                let kept = before
                    .get(&name.full())
                    .filter(|f| Arc::ptr_eq(f.live(), &live));
                let driver = kept.cloned().unwrap_or_else(|| {
                    let records = wasmvol::store::records::HostRecords::new(
                        self.runtime.state().clone(),
                        "flex",
                        d.name.as_str(),
                    );
                    let staging = policy
                        .host
                        .state_dir
                        .join("flex-staging")
                        .join(d.name.as_str());
                    Arc::new(FlexDriver::new(live, name.clone(), records, staging))
                });
                Some((name.full(), driver))
            })
            .collect();
        let names: Vec<&String> = drivers.keys().collect();
        let socket = &policy.host.flex_socket;
        if !drivers.is_empty() {
            println!("flex: drivers {names:?} on {}", socket.display());
        }
        let drivers = Arc::new(drivers);
        match (&self.flex, listener) {
            (Some(f), _) => {
                f.drivers.send_replace(drivers);
            }
            (None, Some(listener)) => {
                tracing::info!(socket = %socket.display(), "Flex socket ready");
                let (tx, rx) = watch::channel(drivers);
                let mut stop = self.stop_all.clone();
                self.servers.spawn(async move {
                    wasmvol::flex::serve(rx, listener, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                    Ok(())
                });
                self.flex = Some(FlexFront {
                    socket: socket.clone(),
                    drivers: tx,
                });
            }
            (None, None) => {}
        }
    }
}

/// The socket paths a CSI driver's settings serve.
fn csi_paths(settings: &CsiSettings) -> Vec<PathBuf> {
    std::iter::once(settings.socket.clone())
        .chain(settings.registration_socket.clone())
        .collect()
}

/// Before any call: forgets the publish and mount records of every driver
/// whose target has nothing mounted on it any more (their removal is
/// relaxed, and a crash of the host before can have lost it).
fn forget_unmounted(runtime: &Runtime, policy: &wasmvol::policy::Policy) -> anyhow::Result<()> {
    use wasmvol::store::records::HostRecords;
    let mounted: std::collections::HashSet<_> = wasmvol::sys::mount::mount_points()
        .context("reading the mount table")?
        .into_iter()
        .collect();
    for d in &policy.drivers {
        let name = d.name.as_str();
        let state = runtime.state().clone();
        let csi = wasmvol::csi::records::Records(HostRecords::new(state.clone(), "csi", name))
            .forget_unmounted(&mounted)?;
        let flex = wasmvol::flex::records::FlexRecords::new(HostRecords::new(state, "flex", name))
            .forget_unmounted(&mounted)?;
        if csi + flex > 0 {
            tracing::info!(
                driver = name,
                records = csi + flex,
                "forgot the records of targets no longer mounted (a crash cut their removal off)"
            );
        }
    }
    Ok(())
}
