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
        let method_name = request.uri().path().to_owned();
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
                    method_name,
                    grpc_status_code: grpc_code_name(code),
                },
                started.elapsed(),
            );
            answer
        })
    }
}
