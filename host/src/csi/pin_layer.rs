//! Pins each CSI request to one driver version: a tower layer that runs
//! the request inside [`pinned`], so a reload in the middle of an RPC that
//! makes several driver calls does not split it across two versions.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;

use crate::runtime::live::pinned;

/// Wraps a CSI server's services.
#[derive(Clone, Copy, Debug, Default)]
pub struct PinVersionLayer;

impl<S> tower::Layer<S> for PinVersionLayer {
    type Service = PinVersion<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PinVersion(inner)
    }
}

/// The service [`PinVersionLayer`] makes.
#[derive(Clone, Debug)]
pub struct PinVersion<S>(S);

impl<S, B> tower::Service<http::Request<B>> for PinVersion<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        Box::pin(pinned(self.0.call(request)))
    }
}
