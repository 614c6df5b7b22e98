//! The FlexVolume front end: the host side of the `wasmvol-flex` shim.
//!
//! Kubelet execs the shim; the shim forwards `<driver> <call-out> <args>`
//! over one unix socket; the host parses kubelet's argv and JSON options
//! into typed calls ([`callout`], [`options`]), runs them on the driver
//! ([`dispatch`]) and returns exactly the JSON kubelet expects ([`reply`]).

pub mod callout;
pub mod dispatch;
pub mod install;
pub mod options;
pub mod records;
pub mod reply;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;

use callout::{BadCall, CallOut};
use dispatch::FlexDriver;
use reply::Reply;

/// How long a shim may take to send its request (it sends it at once).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads one request as the shim frames it: as pieces arrive, only its
/// item headers are looked at ([`wasmvol_flex::request_len`]) until it is
/// whole, then it is parsed once, so a peer that trickles bytes costs no
/// more than one that sends them at once.
async fn read_request(stream: &mut tokio::net::UnixStream) -> std::io::Result<Vec<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if let Some(len) = wasmvol_flex::request_len(&buf)? {
            if buf.len() >= len {
                return wasmvol_flex::read_request(&mut buf.as_slice());
            }
            buf.reserve(len - buf.len());
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Flex drivers by `vendor/name`.
pub type FlexDrivers = HashMap<String, Arc<FlexDriver>>;

/// Answers one request: `[driver, call-out, args...]`.
pub fn answer(drivers: &FlexDrivers, items: Vec<Vec<u8>>) -> Reply {
    let items: Result<Vec<String>, _> = items.into_iter().map(String::from_utf8).collect();
    let Ok(items) = items else {
        return Reply::failure("arguments must be UTF-8");
    };
    let Some((driver, args)) = items.split_first() else {
        return Reply::failure("empty request");
    };
    let Some(d) = drivers.get(driver) else {
        return Reply::failure(format!(
            "no FlexVolume driver `{driver}` is served by this wasmvol host"
        ));
    };
    let started = std::time::Instant::now();
    // Labelled by call-out; one kubelet does not know is `unknown`, so the
    // label values stay the known few.
    let (method, reply) = match CallOut::parse(args) {
        Ok(call) => (call.name().to_owned(), d.handle(call)),
        Err(BadCall::Unknown(name)) => (
            "unknown".to_owned(),
            Reply::not_supported(format!("call-out `{name}` is not supported")),
        ),
        // A known call-out with bad arguments.
        Err(BadCall::Invalid(message)) => (
            args.first().map_or("unknown", String::as_str).to_owned(),
            Reply::failure(message),
        ),
    };
    if !crate::metrics::METRICS.on() {
        return reply;
    }
    crate::metrics::METRICS.flex_operation(
        crate::metrics::FlexOperation {
            driver_name: driver.clone(),
            method_name: method,
            status: match reply.status {
                reply::Status::Success => "Success",
                reply::Status::Failure => "Failure",
                reply::Status::NotSupported => "Not supported",
            }
            .into(),
        },
        started.elapsed(),
    );
    reply
}

/// Serves shims on `listener` until `shutdown` resolves. Each connection is
/// one call: its request is read on the runtime (an idle or slow peer holds
/// a task and a descriptor, never a thread), then answered on a blocking
/// thread (driver calls block) by the drivers `drivers` holds when it
/// arrived (a reload sends new ones).
pub async fn serve(
    drivers: tokio::sync::watch::Receiver<Arc<FlexDrivers>>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) {
    use tokio::io::AsyncWriteExt;
    tokio::pin!(shutdown);
    let mut acceptor = crate::unix_socket::Acceptor::new(listener);
    loop {
        let mut stream = tokio::select! {
            _ = &mut shutdown => break,
            s = acceptor.accept() => s,
        };
        let drivers = drivers.borrow().clone();
        tokio::spawn(async move {
            let reply = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await
            {
                Ok(Ok(items)) => tokio::task::spawn_blocking(move || answer(&drivers, items))
                    .await
                    .unwrap_or_else(|e| {
                        Reply::failure(format!("the call-out did not finish: {e}"))
                    }),
                // A peer that closed without a word (a liveness check) gets none back.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
                Ok(Err(e)) => Reply::failure(format!("malformed request from the shim: {e}")),
                Err(_) => Reply::failure(format!(
                    "no request from the shim within {} s",
                    REQUEST_TIMEOUT.as_secs()
                )),
            };
            let (code, json) = reply.encode();
            let mut out = Vec::with_capacity(json.len() + 16);
            let _ = wasmvol_flex::write_reply(&mut out, code, &json);
            if let Err(e) = stream.write_all(&out).await {
                tracing::warn!(error = %e, "flex reply not delivered");
            }
        });
    }
}
