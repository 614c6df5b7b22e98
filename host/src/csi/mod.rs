//! The CSI front end: CSI v1.12 over a unix socket per driver.
//!
//! The host does the spec's validation for every driver (required fields,
//! advertised features, idempotency records, one operation per volume at a
//! time), so a vendor's driver only implements the storage work. One file
//! per CSI service, plus the mechanisms they share.

pub mod controller;
pub mod convert;
pub mod group_controller;
pub mod identity;
pub mod metrics_layer;
pub mod node;
pub mod pin_layer;
pub mod records;
pub mod registration;
pub mod status;
pub mod target;
pub mod topology;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::UnixListener;
use tonic::Status;

use crate::bindings::types::Feature;
use crate::call::{Operation, Outcome};
use crate::policy::CsiSettings;
use crate::runtime::driver::LoadedDriver;
use crate::runtime::live::LiveDriver;
use crate::runtime::sync_calls::SyncCalls;
use crate::store::state::StateStore;
use crate::volume_locks::VolumeLocks;

/// The generated CSI v1 messages, servers and clients.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("csi.v1");
}

/// One driver offered over CSI.
pub struct CsiDriver {
    driver: Arc<LiveDriver>,
    settings: CsiSettings,
    node_id: String,
    /// Set for a node-local driver: its volumes are pinned to this node.
    topology: Option<topology::NodeTopology>,
    records: records::Records,
    in_flight: VolumeLocks,
    sync_calls: Arc<SyncCalls>,
    next_request: AtomicU64,
    pid: u32,
}

/// How often an idle CSI connection is pinged.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Streams one CSI connection may have open at once (kubelet and the
/// sidecars use a few; each driver's `limits.concurrency` bounds the work).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// Features that make a driver offer the Controller service.
const CONTROLLER_FEATURES: &[Feature] = &[
    Feature::CreateDeleteVolume,
    Feature::PublishUnpublishVolume,
    Feature::ListVolumes,
    Feature::GetCapacity,
    Feature::Snapshots,
    Feature::CloneVolume,
    Feature::ExpandVolume,
    Feature::ModifyVolume,
    Feature::GetVolume,
    Feature::GetSnapshot,
    Feature::ListSnapshots,
];

impl CsiDriver {
    /// Wraps a driver with its CSI settings; its calls run through `sync_calls`.
    pub fn new(
        driver: Arc<LiveDriver>,
        settings: CsiSettings,
        store: Arc<StateStore>,
        sync_calls: Arc<SyncCalls>,
    ) -> Self {
        let node_id = settings.node_id.clone().unwrap_or_else(default_node_id);
        let first = driver.current();
        let records = records::Records(crate::store::records::HostRecords::new(
            store,
            "csi",
            first.name(),
        ));
        let topology = first
            .info()
            .features
            .contains(&Feature::NodeLocal)
            .then(|| topology::NodeTopology::new(&node_id));
        Self {
            driver,
            settings,
            node_id,
            topology,
            records,
            in_flight: VolumeLocks::default(),
            sync_calls,
            next_request: AtomicU64::new(1),
            pid: std::process::id(),
        }
    }

    /// Takes over the volume locks of the server this one replaces (a
    /// reload that changed the CSI settings): an operation still running
    /// there keeps its volume from this server until it ends.
    pub fn succeeding(mut self, before: &CsiDriver) -> Self {
        self.in_flight = before.in_flight.clone();
        self
    }

    /// The driver version this request is pinned to (see [`LiveDriver`]).
    pub fn version(&self) -> Arc<LoadedDriver> {
        self.driver.version()
    }

    /// Whether the driver advertised a feature.
    pub fn has(&self, f: Feature) -> bool {
        self.version().info().features.contains(&f)
    }

    /// UNIMPLEMENTED unless the driver advertised `f`.
    fn require(&self, f: Feature, rpc: &str) -> Result<(), Status> {
        if self.has(f) {
            Ok(())
        } else {
            Err(Status::unimplemented(format!(
                "{rpc}: driver `{}` does not support {f:?}",
                self.settings.name.as_str()
            )))
        }
    }

    /// Whether volumes grow at the node only: a node-local driver's volume
    /// can be grown only by the host of the node it lives on, and no
    /// cluster-wide controller (csi-resizer has no per-node mode) knows which
    /// node that is. So the host does not advertise ControllerExpandVolume
    /// for such a driver (csi-resizer then only records the new size) and
    /// NodeExpandVolume, which kubelet sends to the owning node, runs the
    /// driver's controller expansion there before the node one.
    pub fn expands_at_node(&self) -> bool {
        self.has(Feature::ExpandVolume) && self.topology.is_some()
    }

    /// Whether the Controller service is offered.
    pub fn has_controller(&self) -> bool {
        CONTROLLER_FEATURES.iter().any(|f| self.has(*f))
    }

    /// The id of the next driver call, as logs and the audit trail name it.
    fn request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("csi-{}-{n}", self.pid)
    }

    /// Runs one driver call (synchronous: see [`SyncCalls`] for where it runs).
    async fn call(&self, op: Operation) -> Result<Outcome, Status> {
        let request_id = self.request_id();
        let driver = self.version();
        self.sync_calls
            .run(move || driver.call(&request_id, op))
            .await
            .map_err(status::from_call)
    }

    /// [`LoadedDriver::probe`] of the version this request is pinned to.
    async fn probe(&self) -> Result<(), Status> {
        let request_id = self.request_id();
        let driver = self.version();
        self.sync_calls
            .run(move || driver.probe(&request_id))
            .await
            .map_err(status::from_call)
    }

    /// The socket path and CSI name.
    pub fn settings(&self) -> &CsiSettings {
        &self.settings
    }
}

/// Serves a driver's Identity, Node and (when it has the features for
/// them) Controller and GroupController services on `listener` until `shutdown` resolves.
pub async fn serve(
    driver: Arc<CsiDriver>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    use proto::controller_server::ControllerServer;
    use proto::group_controller_server::GroupControllerServer;
    use proto::identity_server::IdentityServer;
    use proto::node_server::NodeServer;
    let controller = driver
        .has_controller()
        .then(|| ControllerServer::from_arc(driver.clone()));
    let group_controller = driver
        .has(Feature::GroupSnapshots)
        .then(|| GroupControllerServer::from_arc(driver.clone()));
    tonic::transport::Server::builder()
        // A peer that stops answering pings (gone, or never a real client)
        // is let go; one connection cannot open streams without bound.
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .layer(metrics_layer::CsiMetricsLayer::new(
            driver.settings().name.as_str(),
        ))
        .layer(pin_layer::PinVersionLayer)
        .add_service(IdentityServer::from_arc(driver.clone()))
        .add_service(NodeServer::from_arc(driver.clone()))
        .add_optional_service(controller)
        .add_optional_service(group_controller)
        .serve_with_incoming_shutdown(crate::grpc_authority::incoming(listener), shutdown)
        .await
}

/// The CSI node id when the policy names none: `WASMVOL_NODE_ID` (the
/// DaemonSet sets it to the node's name), else this machine's host name.
pub fn default_node_id() -> String {
    std::env::var("WASMVOL_NODE_ID")
        .ok()
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .unwrap_or_else(host_name)
}

/// This machine's host name.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
