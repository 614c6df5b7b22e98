//! kubelet plugin registration, built in: no node-driver-registrar sidecar.
//!
//! For each CSI driver the host serves kubelet's `pluginregistration.v1`
//! service on `<kubelet root>/plugins_registry/<csi name>-reg.sock`.
//! kubelet's plugin watcher finds the socket, calls `GetInfo` (the answer is
//! fixed at start, so the call kubelet repeats every 10 s costs nothing),
//! registers the driver and reports back. A failed registration is logged
//! and retried the way kubelet retries: the socket is made anew, which the
//! watcher sees as a new plugin.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::policy::CsiSettings;
use crate::unix_socket::{self, SocketError};

/// The generated kubelet registration messages, server and client.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("pluginregistration");
}

use proto::registration_server::{Registration, RegistrationServer};
use proto::{InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse};

/// The plugin type kubelet's CSI handler takes.
const CSI_PLUGIN: &str = "CSIPlugin";
/// The registration API versions offered.
const VERSIONS: &[&str] = &["1.0.0"];
/// Pause before the socket is made anew after kubelet refused the plugin.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// One driver's registration: its fixed answer and where kubelet looks.
#[derive(Debug, Clone)]
pub struct KubeletRegistration {
    info: PluginInfo,
    socket: PathBuf,
}

impl KubeletRegistration {
    /// The registration of a CSI driver, when the policy asks for one.
    pub fn of(settings: &CsiSettings) -> Option<Self> {
        let socket = settings.registration_socket.clone()?;
        Some(Self {
            info: PluginInfo {
                r#type: CSI_PLUGIN.into(),
                name: settings.name.as_str().into(),
                endpoint: settings.socket.display().to_string(),
                supported_versions: VERSIONS.iter().map(|v| v.to_string()).collect(),
            },
            socket,
        })
    }

    /// The registration socket's path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Binds the registration socket (a stale one is replaced), so a
    /// failure shows at start, before serving.
    pub fn bind(&self) -> Result<tokio::net::UnixListener, SocketError> {
        unix_socket::bind(&self.socket, 0o600)
    }

    /// Serves registration on `listener` until `shutdown` resolves, making
    /// the socket anew whenever kubelet reports a failed registration.
    pub async fn serve(
        self,
        mut listener: tokio::net::UnixListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), SocketError> {
        tokio::pin!(shutdown);
        loop {
            let (refused_tx, mut refused) = mpsc::channel(1);
            let service = Service {
                info: self.info.clone(),
                refused: refused_tx,
            };
            let server = tonic::transport::Server::builder()
                .add_service(RegistrationServer::new(service))
                .serve_with_incoming_shutdown(crate::grpc_authority::incoming(listener), async {
                    refused.recv().await;
                });
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                served = server => {
                    if let Err(e) = served {
                        tracing::error!(socket = %self.socket.display(), error = %e, "registration server failed; making its socket anew");
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
            }
            let _ = std::fs::remove_file(&self.socket);
            listener = self.bind()?;
            tracing::info!(socket = %self.socket.display(), "registration socket made anew");
        }
    }
}

struct Service {
    info: PluginInfo,
    refused: mpsc::Sender<()>,
}

#[tonic::async_trait]
impl Registration for Service {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        Ok(Response::new(self.info.clone()))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        if status.plugin_registered {
            tracing::info!(csi_name = %self.info.name, "registered with kubelet");
        } else {
            tracing::error!(csi_name = %self.info.name, error = %status.error, "kubelet did not register the driver; registering again");
            let _ = self.refused.try_send(());
        }
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}
