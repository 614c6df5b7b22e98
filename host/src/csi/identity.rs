//! CSI Identity: who the plugin is, what it offers, whether it is ready.

use tonic::{Request, Response, Status};

use super::proto::identity_server::Identity;
use super::proto::plugin_capability::{self, service, volume_expansion};
use super::proto::*;
use super::CsiDriver;
use crate::bindings::types::Feature;

#[tonic::async_trait]
impl Identity for CsiDriver {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        let version = self.version();
        let info = version.info();
        Ok(Response::new(GetPluginInfoResponse {
            name: self.settings.name.as_str().to_owned(),
            vendor_version: info.vendor_version.clone(),
            manifest: info.manifest.iter().cloned().collect(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        let mut capabilities = Vec::new();
        let service = |t: service::Type| PluginCapability {
            r#type: Some(plugin_capability::Type::Service(
                plugin_capability::Service { r#type: t as i32 },
            )),
        };
        if self.has_controller() {
            capabilities.push(service(service::Type::ControllerService));
        }
        if self.has(Feature::GroupSnapshots) {
            capabilities.push(service(service::Type::GroupControllerService));
        }
        if self.has(Feature::NodeLocal) {
            capabilities.push(service(service::Type::VolumeAccessibilityConstraints));
        }
        if self.has(Feature::ExpandVolume) {
            let t = if self.has(Feature::OnlineExpansion) {
                volume_expansion::Type::Online
            } else {
                volume_expansion::Type::Offline
            };
            capabilities.push(PluginCapability {
                r#type: Some(plugin_capability::Type::VolumeExpansion(
                    plugin_capability::VolumeExpansion { r#type: t as i32 },
                )),
            });
        }
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        // Ready when a fresh instance answers a no-op call in time, or when
        // every slot is busy with calls (see LoadedDriver::probe).
        let ready = self.probe().await.is_ok();
        Ok(Response::new(ProbeResponse { ready: Some(ready) }))
    }
}
