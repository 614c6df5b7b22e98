//! `log`: lines a driver logs, kept for the test ([`super::FakeHost::log`]).

use super::world::{self, LogLine};

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// Log a line with fields.
pub fn log(level: Level, message: &str, fields: &[(String, String)]) {
    world::with(|w| {
        w.log.push(LogLine {
            level,
            message: message.to_owned(),
            fields: fields.to_vec(),
        })
    });
}
