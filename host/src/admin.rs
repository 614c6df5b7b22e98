//! The admin socket (`<state_dir>/admin.sock`): how `wasmvol status` and
//! `wasmvol call` reach a running host, which alone may open its state
//! store. One JSON request per connection, one JSON answer. Root only: the
//! socket is 0600 and a peer that is neither root nor the host's own user
//! is refused before anything is read.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::call::Operation;
use crate::runtime::artifact_cache::Provenance;
use crate::runtime::Runtime;

/// The largest request the socket reads (a driver call's JSON).
const MAX_REQUEST: u64 = 1 << 20;

/// How long a peer may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum AdminRequest {
    /// The host's drivers, sockets, files and calls in flight.
    Status,
    /// One driver call, as `wasmvol call` makes it.
    Call {
        /// The driver's policy name.
        driver: String,
        /// The operation (`create-volume`).
        operation: String,
        /// Its request as JSON.
        request: Value,
        /// For logs and the audit trail.
        request_id: String,
    },
    /// Re-read the policy and swap what changed (as SIGHUP does).
    Reload,
}

/// What the host answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminAnswer {
    /// The answer to `status`.
    Status(HostStatus),
    /// A call's outcome, as JSON.
    Outcome(Value),
    /// A call that failed: its class, message and the exit status
    /// `wasmvol call` gives it (see `CallError::exit_code`).
    Failed {
        /// `not-found`, `deadline`, …
        class: String,
        /// What went wrong.
        message: String,
        /// The exit status for the class.
        exit_code: i32,
    },
    /// A reload that took effect: what it changed.
    Reloaded(String),
    /// A request the host could not take (malformed, unknown operation,
    /// a reload refused).
    Refused(String),
}

/// A running host, as `wasmvol status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostStatus {
    /// The host's process id.
    pub pid: u32,
    /// The host's version.
    pub version: String,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// Its state directory (the store, the admin socket).
    pub state_dir: PathBuf,
    /// Its audit log.
    pub audit_log: PathBuf,
    /// The Flex socket, when a driver is offered over Flex.
    pub flex_socket: Option<PathBuf>,
    /// How the last reload went, if there was one.
    #[serde(default)]
    pub last_reload: Option<String>,
    /// Every driver it serves.
    pub drivers: Vec<DriverStatus>,
}

/// One served driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriverStatus {
    /// Policy name.
    pub name: String,
    /// The driver's own version (`info.vendor-version`).
    pub version: String,
    /// The component file and the digest of the version serving.
    pub component: PathBuf,
    /// Sha-256, hex.
    pub sha256: String,
    /// Whether its compiled artifact came from the cache.
    pub cached: bool,
    /// Its CSI endpoint, when offered over CSI.
    pub csi: Option<CsiEndpoint>,
    /// Flex `vendor/name`, when offered over Flex.
    pub flex: Option<String>,
    /// Calls running now.
    pub calls_in_flight: u32,
    /// Calls waiting for a slot.
    pub calls_waiting: u32,
    /// `limits.concurrency`.
    pub concurrency: u32,
}

/// A driver's CSI name and the socket it is served on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CsiEndpoint {
    /// The CSI driver name (`hostpath.csi.wasmvol.io`).
    pub name: String,
    /// The CSI socket.
    pub socket: PathBuf,
}

/// Asks the serving loop for a reload; it answers what changed or why not.
pub type ReloadAsk = tokio::sync::oneshot::Sender<Result<String, String>>;

/// What the admin socket serves from.
pub struct Admin {
    runtime: Arc<Runtime>,
    reload: tokio::sync::mpsc::Sender<ReloadAsk>,
    started: Instant,
}

impl Admin {
    /// The admin view of a host serving `runtime`; reloads go to `reload`.
    pub fn new(runtime: Arc<Runtime>, reload: tokio::sync::mpsc::Sender<ReloadAsk>) -> Self {
        Self {
            runtime,
            reload,
            started: Instant::now(),
        }
    }

    fn status(&self) -> HostStatus {
        let policy = self.runtime.policy();
        HostStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_s: self.started.elapsed().as_secs(),
            state_dir: policy.host.state_dir.clone(),
            audit_log: policy.host.audit_log.clone(),
            flex_socket: (policy.drivers.iter())
                .any(|d| d.flex.is_some())
                .then(|| policy.host.flex_socket.clone()),
            last_reload: self.runtime.last_reload().map(|n| n.to_string()),
            drivers: self
                .runtime
                .drivers()
                .iter()
                .map(|live| {
                    let d = live.current();
                    let p = d.policy();
                    let (in_flight, waiting) = d.calls();
                    DriverStatus {
                        name: d.name().into(),
                        version: d.info().vendor_version.clone(),
                        component: p.component.clone(),
                        sha256: d.digest().to_hex(),
                        cached: d.provenance() == Provenance::Cached,
                        csi: p.csi.as_ref().map(|c| CsiEndpoint {
                            name: c.name.as_str().to_owned(),
                            socket: c.socket.clone(),
                        }),
                        flex: p.flex.as_ref().map(|f| f.full()),
                        calls_in_flight: in_flight,
                        calls_waiting: waiting,
                        concurrency: p.limits.concurrency,
                    }
                })
                .collect(),
        }
    }

    async fn answer(self: &Arc<Self>, request: AdminRequest) -> AdminAnswer {
        match request {
            AdminRequest::Status => AdminAnswer::Status(self.status()),
            AdminRequest::Call {
                driver,
                operation,
                request,
                request_id,
            } => {
                let Some(d) = self.runtime.driver(&driver) else {
                    let e = crate::call::CallError::UnknownDriver(driver);
                    return failed(&e);
                };
                let op = match Operation::from_json(&operation, request) {
                    Ok(op) => op,
                    Err(e) => return AdminAnswer::Refused(e),
                };
                let outcome = tokio::task::spawn_blocking(move || d.call(&request_id, op)).await;
                match outcome {
                    Ok(Ok(outcome)) => {
                        AdminAnswer::Outcome(serde_json::to_value(&outcome).unwrap_or(Value::Null))
                    }
                    Ok(Err(e)) => failed(&e),
                    Err(e) => AdminAnswer::Refused(format!("the call did not finish: {e}")),
                }
            }
            AdminRequest::Reload => {
                let (ask, answer) = tokio::sync::oneshot::channel();
                if self.reload.send(ask).await.is_err() {
                    return AdminAnswer::Refused("the host is shutting down".into());
                }
                match answer.await {
                    Ok(Ok(changed)) => AdminAnswer::Reloaded(changed),
                    Ok(Err(why)) => AdminAnswer::Refused(why),
                    Err(_) => AdminAnswer::Refused("the host is shutting down".into()),
                }
            }
        }
    }
}

fn failed(e: &crate::call::CallError) -> AdminAnswer {
    AdminAnswer::Failed {
        class: e.class().into(),
        message: e.message(),
        exit_code: e.exit_code(),
    }
}

/// Serves the admin socket until `shutdown` resolves.
pub async fn serve(
    admin: Arc<Admin>,
    listener: UnixListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut acceptor = crate::unix_socket::Acceptor::new(listener);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            s = acceptor.accept() => s,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(admin, stream).await {
                tracing::debug!(error = %e, "admin socket: connection");
            }
        });
    }
}

async fn connection(admin: Arc<Admin>, stream: tokio::net::UnixStream) -> std::io::Result<()> {
    let peer = stream.peer_cred()?.uid();
    if peer != 0 && peer != nix::unistd::geteuid().as_raw() {
        tracing::warn!(
            uid = peer,
            "admin socket: a peer that is not root was refused"
        );
        return Ok(());
    }
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let answer = match serde_json::from_slice::<AdminRequest>(&line) {
        Ok(request) => admin.answer(request).await,
        Err(e) => AdminAnswer::Refused(format!("not an admin request: {e}")),
    };
    let mut out = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

/// Sends `request` to the host serving `socket`; `Ok(None)` when no host
/// serves it (no socket, or nobody listening), so the caller may do the
/// work itself.
pub fn request(socket: &Path, request: &AdminRequest) -> std::io::Result<Option<AdminAnswer>> {
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = Vec::new();
    std::io::BufReader::new(stream).read_until(b'\n', &mut answer)?;
    if answer.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} closed without answering (refused?)", socket.display()),
        ));
    }
    serde_json::from_slice(&answer)
        .map(Some)
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_read_back_as_written() {
        let call = AdminRequest::Call {
            driver: "hostpath".into(),
            operation: "create-volume".into(),
            request: serde_json::json!({"name": "v"}),
            request_id: "cli".into(),
        };
        let text = serde_json::to_string(&call).unwrap();
        assert!(text.contains(r#""op":"call""#), "{text}");
        assert!(matches!(
            serde_json::from_str::<AdminRequest>(&text).unwrap(),
            AdminRequest::Call { driver, .. } if driver == "hostpath"
        ));
        let status: AdminRequest = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert!(matches!(status, AdminRequest::Status));
        let failed = AdminAnswer::Failed {
            class: "not-found".into(),
            message: "volume x".into(),
            exit_code: 11,
        };
        let back: AdminAnswer =
            serde_json::from_str(&serde_json::to_string(&failed).unwrap()).unwrap();
        assert!(matches!(back, AdminAnswer::Failed { exit_code: 11, .. }));
    }

    #[test]
    fn no_host_on_the_socket_means_none_not_an_error() {
        let dir = std::env::temp_dir().join(format!("wasmvol-admin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let absent = dir.join("admin.sock");
        assert!(request(&absent, &AdminRequest::Status).unwrap().is_none());
        // A socket file nobody listens on any more.
        drop(std::os::unix::net::UnixListener::bind(&absent).unwrap());
        assert!(request(&absent, &AdminRequest::Status).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
