//! `wasmvol:driver/log`: the driver's log lines, into the host's tracing.
//!
//! Lines are tagged with driver and request id. Logging needs no grant and
//! touches nothing on the host, so it is not audited. Messages are capped.

use crate::bindings::log::{Host, Level};
use crate::context::CallContext;

/// Longest message or field value forwarded; the rest is cut.
const MAX_TEXT: usize = 4096;

fn cap(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Host for CallContext {
    fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let fields: Vec<String> = fields
            .iter()
            .take(32)
            .map(|(k, v)| format!("{}={}", cap(k), cap(v)))
            .collect();
        let fields = fields.join(" ");
        let (driver, request_id, message) =
            (self.driver(), self.request_id.as_str(), cap(&message));
        match level {
            Level::Trace => {
                tracing::trace!(target: "wasmvol::driver", driver, request_id, fields, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "wasmvol::driver", driver, request_id, fields, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "wasmvol::driver", driver, request_id, fields, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "wasmvol::driver", driver, request_id, fields, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "wasmvol::driver", driver, request_id, fields, "{message}")
            }
        }
        Ok(())
    }
}
