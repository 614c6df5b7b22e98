//! The host's HTTP endpoint (`[host] http`): `/healthz` and `/metrics`.
//!
//! `/healthz` answers 200 `ok` when every driver answers a probe call (its
//! identity export, on a fresh instance, as CSI Probe does), else 503 with
//! each failing driver and why: a liveness probe restarts a host whose
//! drivers cannot answer. `/metrics` is [`crate::metrics`] in the
//! OpenMetrics text format. Served on a TCP address or a unix socket.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::metrics::METRICS;
use crate::policy::HttpListen;
use crate::runtime::driver::LoadedDriver;
use crate::runtime::Runtime;

/// Where the endpoint listens, bound.
pub enum HttpListener {
    /// A TCP address.
    Tcp(tokio::net::TcpListener),
    /// A unix socket.
    Unix(crate::unix_socket::Acceptor),
}

impl HttpListener {
    /// Binds `at` (a unix socket is staged and renamed as the others are).
    pub async fn bind(at: &HttpListen) -> anyhow::Result<Self> {
        Ok(match at {
            HttpListen::Tcp(addr) => Self::Tcp(tokio::net::TcpListener::bind(addr).await?),
            HttpListen::Unix(path) => Self::Unix(crate::unix_socket::Acceptor::new(
                crate::unix_socket::bind(path, 0o660)?,
            )),
        })
    }
}

/// Serves `/healthz` and `/metrics` for the drivers of `runtime` until `shutdown` resolves.
pub async fn serve(
    mut listener: HttpListener,
    drivers: Arc<Runtime>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = accept(&mut listener) => a,
        };
        let Some(io) = accepted else { continue };
        let drivers = drivers.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |r| answer(r, drivers.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

type Io = TokioIo<Box<dyn Stream>>;

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

async fn accept(listener: &mut HttpListener) -> Option<Io> {
    let stream: Box<dyn Stream> = match listener {
        HttpListener::Tcp(l) => match l.accept().await {
            Ok((s, _)) => Box::new(s),
            Err(e) => {
                // Out of descriptors, say: pause rather than spin.
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                return None;
            }
        },
        HttpListener::Unix(a) => Box::new(a.accept().await),
    };
    Some(TokioIo::new(stream))
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a response of known parts")
}

async fn answer(
    request: Request<Incoming>,
    runtime: Arc<Runtime>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET {
        return Ok(text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ));
    }
    Ok(match request.uri().path() {
        "/healthz" => {
            let drivers: Vec<_> = runtime.drivers().iter().map(|d| d.current()).collect();
            let failing = tokio::task::spawn_blocking(move || probe_all(&drivers))
                .await
                .unwrap_or_else(|e| vec![format!("probe panicked: {e}")]);
            // Healthy or not, the last reload is told: a refused one leaves
            // the drivers serving as before, so it does not fail the check.
            let reload = runtime
                .last_reload()
                .map(|n| format!("{n}\n"))
                .unwrap_or_default();
            if failing.is_empty() {
                text(StatusCode::OK, "text/plain", format!("ok\n{reload}"))
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    failing.join("\n") + "\n" + &reload,
                )
            }
        }
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            METRICS.encode(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

/// Each driver that does not answer its probe, with why.
fn probe_all(drivers: &[Arc<LoadedDriver>]) -> Vec<String> {
    drivers
        .iter()
        .filter_map(|d| match d.probe("healthz") {
            Ok(()) => None,
            Err(e) => Some(format!("{}: {e}", d.name())),
        })
        .collect()
}
