//! The CSI conformance sweep: the spec's "MUST fail with" and idempotency
//! sentences, RPC by RPC, as rows run against any CSI endpoint over its
//! socket. The rows a driver gets follow what it advertises (plugin,
//! controller, node and group controller capabilities), so one sweep fits
//! every driver; what the spec leaves to the driver (the parameters a
//! volume needs, a mutable parameter it accepts) comes from a [`Profile`].
//!
//! `wasmvol conformance` runs it against a component in a sandbox of its
//! own; the end-to-end suite runs it against every bundled driver.

mod controller;
mod node;
pub mod report;
mod snapshots;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::csi::proto::controller_client::ControllerClient;
use crate::csi::proto::group_controller_client::GroupControllerClient;
use crate::csi::proto::identity_client::IdentityClient;
use crate::csi::proto::node_client::NodeClient;
use crate::csi::proto::*;
pub use report::{Report, Row, Verdict};

/// What the sweep needs to know about a driver that the spec leaves to it.
#[derive(Clone, Debug)]
pub struct Profile {
    /// CreateVolume `parameters` (a StorageClass's), e.g. `volumegroup`.
    pub parameters: HashMap<String, String>,
    /// A `mutable_parameters` change the driver accepts, for the
    /// ControllerModifyVolume rows that must succeed; none skips them.
    pub mutable_parameters: HashMap<String, String>,
    /// The fs type of the mount capability the rows use (empty: the driver's default).
    pub fs_type: String,
    /// Bytes the sweep's volumes ask for.
    pub size: i64,
    /// Whether the driver provisions the size asked (a same-name create of
    /// another size must then be ALREADY_EXISTS); a share-backed driver
    /// that does not size its volumes may answer either.
    pub sizes_volumes: bool,
    /// Where the sweep's staging and target paths go (kubelet's pods dir).
    pub kubelet_dir: PathBuf,
}

impl Profile {
    /// A profile with no parameters, 32 MiB volumes, paths under `kubelet_dir`.
    pub fn new(kubelet_dir: &Path) -> Self {
        Self {
            parameters: HashMap::new(),
            mutable_parameters: HashMap::new(),
            fs_type: String::new(),
            size: 32 << 20,
            sizes_volumes: true,
            kubelet_dir: kubelet_dir.to_owned(),
        }
    }
}

/// A gRPC channel to a CSI endpoint on a unix socket; each call gets
/// `timeout` when one is given.
pub async fn connect(socket: &Path, timeout: Option<Duration>) -> Result<Channel, Status> {
    let socket = socket.to_owned();
    // The URI is a placeholder: the connector always dials the socket.
    let mut endpoint = tonic::transport::Endpoint::from_static("http://localhost");
    if let Some(t) = timeout {
        endpoint = endpoint.timeout(t);
    }
    endpoint
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .map_err(|e| Status::unavailable(format!("connect: {e}")))
}

/// What the endpoint says it offers.
#[derive(Default)]
struct Offers {
    controller_service: bool,
    group_service: bool,
    controller: HashSet<i32>,
    node: HashSet<i32>,
    group: HashSet<i32>,
}

impl Offers {
    fn controller(&self, t: controller_service_capability::rpc::Type) -> bool {
        self.controller_service && self.controller.contains(&(t as i32))
    }
    fn node(&self, t: node_service_capability::rpc::Type) -> bool {
        self.node.contains(&(t as i32))
    }
    fn groups(&self) -> bool {
        self.group_service
            && self.group.contains(
                &(group_controller_service_capability::rpc::Type::CreateDeleteGetVolumeGroupSnapshot
                    as i32),
            )
    }
}

/// The status code of an answer, and its message when it is an error.
fn answered<T>(r: &Result<tonic::Response<T>, Status>) -> (Code, &str) {
    match r {
        Ok(_) => (Code::Ok, ""),
        Err(s) => (s.code(), s.message()),
    }
}

/// One sweep in progress: the clients, what the endpoint offers, the rows so far.
struct Sweep {
    identity: IdentityClient<Channel>,
    controller: ControllerClient<Channel>,
    group: GroupControllerClient<Channel>,
    node: NodeClient<Channel>,
    offers: Offers,
    profile: Profile,
    report: Report,
}

impl Sweep {
    fn expect<T>(
        &mut self,
        rpc: &str,
        spec: &str,
        want: Code,
        got: &Result<tonic::Response<T>, Status>,
    ) {
        self.report.expect(rpc, spec, want, answered(got));
    }

    fn fail(&mut self, rpc: &str, spec: &str, why: String) {
        self.report.push(rpc, spec, Verdict::Failed(why));
    }

    /// The row for a volume condition that must be set on a new, healthy volume.
    fn condition_row(&mut self, rpc: &str, spec: &str, condition: Option<&VolumeCondition>) {
        match condition {
            Some(c) if !c.abnormal => self.report.push(rpc, spec, Verdict::Passed),
            Some(c) => self.fail(
                rpc,
                spec,
                format!("a new volume is abnormal: {}", c.message),
            ),
            None => self.fail(rpc, spec, "no volume_condition".into()),
        }
    }

    /// The two paging rows every List RPC has: a negative `max_entries`
    /// and a `starting_token` the plugin never gave.
    fn paging_rows<T>(
        &mut self,
        rpc: &str,
        negative: &Result<tonic::Response<T>, Status>,
        unknown_token: &Result<tonic::Response<T>, Status>,
    ) {
        self.expect(
            rpc,
            "max_entries MUST NOT be negative",
            Code::InvalidArgument,
            negative,
        );
        self.expect(rpc, "invalid starting_token", Code::Aborted, unknown_token);
    }

    fn skip(&mut self, rpc: &str, spec: &str, why: &str) {
        self.report.push(rpc, spec, Verdict::Skipped(why.into()));
    }

    /// The mount capability the rows use, with `mode`.
    fn cap(&self, mode: volume_capability::access_mode::Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(
                volume_capability::MountVolume {
                    fs_type: self.profile.fs_type.clone(),
                    ..Default::default()
                },
            )),
            access_mode: Some(volume_capability::AccessMode { mode: mode as i32 }),
        }
    }

    /// The usual capability: mounted, single-node writer.
    fn rw(&self) -> VolumeCapability {
        self.cap(volume_capability::access_mode::Mode::SingleNodeWriter)
    }

    /// CreateVolume of `name` with `bytes` and the profile's parameters.
    fn create_req(&self, name: &str, bytes: i64) -> CreateVolumeRequest {
        CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![self.rw()],
            parameters: self.profile.parameters.clone(),
            ..Default::default()
        }
    }

    /// A path under the profile's kubelet dir (its parent made, as kubelet does).
    fn path(&self, name: &str) -> String {
        let _ = std::fs::create_dir_all(&self.profile.kubelet_dir);
        self.profile.kubelet_dir.join(name).display().to_string()
    }

    async fn discover(&mut self) {
        let info = self.identity.get_plugin_info(GetPluginInfoRequest {}).await;
        self.expect("GetPluginInfo", "answers", Code::Ok, &info);
        if let Ok(info) = &info {
            let info = info.get_ref();
            if info.name.is_empty() {
                self.fail("GetPluginInfo", "name is REQUIRED", "empty".into());
            }
            if info.vendor_version.is_empty() {
                self.fail(
                    "GetPluginInfo",
                    "vendor_version is REQUIRED",
                    "empty".into(),
                );
            }
        }
        let probe = self.identity.probe(ProbeRequest {}).await;
        self.expect("Probe", "a ready plugin answers OK", Code::Ok, &probe);

        let caps = self
            .identity
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await;
        self.expect("GetPluginCapabilities", "answers", Code::Ok, &caps);
        for c in caps
            .map(|c| c.into_inner().capabilities)
            .unwrap_or_default()
        {
            if let Some(plugin_capability::Type::Service(s)) = c.r#type {
                use plugin_capability::service::Type;
                match Type::try_from(s.r#type) {
                    Ok(Type::ControllerService) => self.offers.controller_service = true,
                    Ok(Type::GroupControllerService) => self.offers.group_service = true,
                    _ => {}
                }
            }
        }
        if self.offers.controller_service {
            let r = self
                .controller
                .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
                .await;
            self.expect("ControllerGetCapabilities", "answers", Code::Ok, &r);
            self.offers.controller = r
                .map(|r| r.into_inner().capabilities)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| {
                    c.r#type
                        .map(|controller_service_capability::Type::Rpc(rpc)| rpc.r#type)
                })
                .collect();
        }
        let r = self
            .node
            .node_get_capabilities(NodeGetCapabilitiesRequest {})
            .await;
        self.expect("NodeGetCapabilities", "answers", Code::Ok, &r);
        self.offers.node = r
            .map(|r| r.into_inner().capabilities)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| {
                c.r#type
                    .map(|node_service_capability::Type::Rpc(rpc)| rpc.r#type)
            })
            .collect();
        if self.offers.group_service {
            let r = self
                .group
                .group_controller_get_capabilities(GroupControllerGetCapabilitiesRequest {})
                .await;
            self.expect("GroupControllerGetCapabilities", "answers", Code::Ok, &r);
            self.offers.group = r
                .map(|r| r.into_inner().capabilities)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| {
                    c.r#type
                        .map(|group_controller_service_capability::Type::Rpc(rpc)| rpc.r#type)
                })
                .collect();
        }
    }
}

/// Runs every row the endpoint's capabilities call for and reports them.
/// What the sweep creates it deletes again, whatever the driver answers.
pub async fn run(channel: Channel, profile: Profile) -> Report {
    let mut s = Sweep {
        identity: IdentityClient::new(channel.clone()),
        controller: ControllerClient::new(channel.clone()),
        group: GroupControllerClient::new(channel.clone()),
        node: NodeClient::new(channel),
        offers: Offers::default(),
        profile,
        report: Report::default(),
    };
    s.discover().await;
    s.volume_rows().await;
    s.report
}
