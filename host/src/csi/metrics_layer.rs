//! Times every CSI call as csi-lib-utils does: a tower layer around the
//! gRPC server, so calls refused before any handler runs (an unknown
//! method, a malformed message) are counted as well.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;

use crate::metrics::{grpc_code_name, CsiOperation, METRICS};

/// Wraps a CSI server's services for one driver.
#[derive(Clone)]
pub struct CsiMetricsLayer {
    driver_name: Arc<str>,
}

impl CsiMetricsLayer {
    /// Records the calls of the CSI driver named `driver_name`.
    pub fn new(driver_name: &str) -> Self {
        Self {
            driver_name: driver_name.into(),
        }
    }
}

impl<S> tower::Layer<S> for CsiMetricsLayer {
    type Service = CsiMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsiMetrics {
            inner,
            driver_name: self.driver_name.clone(),
        }
    }
}

/// The timing service [`CsiMetricsLayer`] makes.
#[derive(Clone)]
pub struct CsiMetrics<S> {
    inner: S,
    driver_name: Arc<str>,
}

/// Every CSI v1.12 method, as the label `method_name` takes it: a path
/// no CSI service has is `unknown`, so a client cannot grow the metrics
/// without bound by calling made-up methods.
const METHODS: &[&str] = &[
    "/csi.v1.Identity/GetPluginInfo",
    "/csi.v1.Identity/GetPluginCapabilities",
    "/csi.v1.Identity/Probe",
    "/csi.v1.Controller/CreateVolume",
    "/csi.v1.Controller/DeleteVolume",
    "/csi.v1.Controller/ControllerPublishVolume",
    "/csi.v1.Controller/ControllerUnpublishVolume",
    "/csi.v1.Controller/ValidateVolumeCapabilities",
    "/csi.v1.Controller/ListVolumes",
    "/csi.v1.Controller/GetCapacity",
    "/csi.v1.Controller/ControllerGetCapabilities",
    "/csi.v1.Controller/CreateSnapshot",
    "/csi.v1.Controller/DeleteSnapshot",
    "/csi.v1.Controller/ListSnapshots",
    "/csi.v1.Controller/GetSnapshot",
    "/csi.v1.Controller/ControllerExpandVolume",
    "/csi.v1.Controller/ControllerGetVolume",
    "/csi.v1.Controller/ControllerModifyVolume",
    "/csi.v1.GroupController/GroupControllerGetCapabilities",
    "/csi.v1.GroupController/CreateVolumeGroupSnapshot",
    "/csi.v1.GroupController/DeleteVolumeGroupSnapshot",
    "/csi.v1.GroupController/GetVolumeGroupSnapshot",
    "/csi.v1.SnapshotMetadata/GetMetadataAllocated",
    "/csi.v1.SnapshotMetadata/GetMetadataDelta",
    "/csi.v1.Node/NodeStageVolume",
    "/csi.v1.Node/NodeUnstageVolume",
    "/csi.v1.Node/NodePublishVolume",
    "/csi.v1.Node/NodeUnpublishVolume",
    "/csi.v1.Node/NodeGetVolumeStats",
    "/csi.v1.Node/NodeExpandVolume",
    "/csi.v1.Node/NodeGetCapabilities",
    "/csi.v1.Node/NodeGetInfo",
];

fn method_label(path: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == path)
        .copied()
        .unwrap_or("unknown")
}

/// A unary answer's status: in the headers when it is an error (a
/// trailers-only answer), otherwise OK (in the trailers).
fn status_of<B>(response: &http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

impl<S, B, R> tower::Service<http::Request<B>> for CsiMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !METRICS.on() {
            return Box::pin(self.inner.call(request));
        }
        let method_name = method_label(request.uri().path());
        let driver_name = self.driver_name.clone();
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            let code = match &answer {
                Ok(r) => status_of(r),
                Err(_) => tonic::Code::Unknown,
            };
            METRICS.csi_operation(
                CsiOperation {
                    driver_name: driver_name.to_string(),
                    method_name: method_name.into(),
                    grpc_status_code: grpc_code_name(code),
                },
                started.elapsed(),
            );
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_csi_methods_become_label_values() {
        assert_eq!(
            method_label("/csi.v1.Node/NodePublishVolume"),
            "/csi.v1.Node/NodePublishVolume"
        );
        assert_eq!(method_label("/csi.v1.Node/MadeUp1"), "unknown");
        assert_eq!(method_label("/x"), "unknown");
    }

    #[test]
    fn every_rpc_of_the_proto_is_listed() {
        let proto = include_str!("../../../proto/csi.proto");
        let mut service = "";
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().unwrap();
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let rpc = rest
                    .split(|c: char| c == '(' || c.is_whitespace())
                    .next()
                    .unwrap();
                let path = format!("/csi.v1.{service}/{rpc}");
                assert_eq!(method_label(&path), path, "missing from METHODS");
            }
        }
    }
}
