//! `wasmvol:driver/log`: the driver's log lines, into the host's tracing.
//!
//! Lines go to tracing target `wasmvol::driver`, tagged with driver and
//! request id, their text escaped ([`escaped`]) so no driver output can pass
//! for a host record. Logging needs no grant and touches nothing on the
//! host, so it is not audited.

use crate::bindings::log::{Host, Level};
use crate::capability::context::CallContext;

/// Longest message or field value forwarded, in bytes; the rest is cut.
const MAX_TEXT: usize = 4096;

/// Driver text made safe for any log sink: at most 4 KiB, and
/// every control character (newline, carriage return, escape, NUL...)
/// written as an escape (`\n`, `\u{1b}`), so a driver can neither start a
/// line of its own nor colour or move a terminal: whatever it prints stays
/// inside one record attributed to it.
pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT));
    for c in s.chars() {
        if out.len() >= MAX_TEXT {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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
            .map(|(k, v)| format!("{}={}", escaped(k), escaped(v)))
            .collect();
        let fields = fields.join(" ");
        let (driver, request_id, message) =
            (self.driver(), self.request_id.as_str(), escaped(&message));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_is_capped() {
        let forged = "ok\n2026-12-02T00:00:00Z INFO wasmvol::audit: allow\r\u{1b}[2K\0";
        let e = escaped(forged);
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert_eq!(
            e,
            "ok\\n2026-12-02T00:00:00Z INFO wasmvol::audit: allow\\r\\u{1b}[2K\\u{0}"
        );
        assert_eq!(escaped("plain é"), "plain é");
        let long = escaped(&"x".repeat(10_000));
        assert!(long.len() <= MAX_TEXT + '…'.len_utf8());
    }
}
