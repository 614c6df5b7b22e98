//! The audit log: one JSON line per capability use and per driver call.
//!
//! Security teams read it to see what each driver did and was refused. Every
//! record also goes to tracing (target `wasmvol::audit`). Arguments are
//! passed through [`redact`] first, so secrets never reach the log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// Whether policy let an operation through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Policy let it through.
    Allow,
    /// Refused, or a contained fault.
    Deny,
}

/// One audit line.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    /// RFC 3339 UTC, milliseconds.
    pub time: String,
    /// The driver, by policy name.
    pub driver: &'a str,
    /// The sha256 of the component version that made the call: across a
    /// reload, which version served each request.
    pub component: String,
    /// The request the use belongs to.
    pub request_id: &'a str,
    /// `call:<export>` for a driver call, `<interface>.<function>` for a capability use.
    pub operation: &'a str,
    /// The arguments, secrets redacted.
    pub args: Value,
    /// Allowed or denied.
    pub decision: Decision,
    /// `ok`, or what went wrong.
    pub outcome: String,
}

/// Append-only JSON-lines sink shared by every call.
#[derive(Debug)]
pub struct AuditLog {
    sink: Option<AuditFile>,
}

/// The log file and the path it was opened from (to reopen after rotation).
#[derive(Debug)]
struct AuditFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (creating) the log file in append mode, readable by root only.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            sink: Some(AuditFile {
                path: path.to_owned(),
                file: Mutex::new(open_append(path)?),
            }),
        })
    }

    /// A log that only writes to tracing (tools that inspect, never run, drivers).
    pub fn tracing_only() -> Self {
        Self { sink: None }
    }

    /// Opens the log's path again and writes there from now on: after
    /// logrotate has moved the file away, records go to a new file at the
    /// configured path instead of the moved one. If the path cannot be
    /// opened, records keep going to the current file and the error is
    /// returned. A batch being written finishes in the file it started in.
    pub fn reopen(&self) -> std::io::Result<()> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        let fresh = open_append(&sink.path)?;
        *sink.file.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Writes one record now. A failed write is reported to tracing, never to the driver.
    pub fn record(&self, record: &AuditRecord<'_>) {
        let mut batch = AuditBatch::default();
        batch.add(record);
        self.write(batch);
    }

    /// Appends a batch of records with one write(2), which keeps lines whole
    /// under concurrent appenders.
    pub fn write(&self, batch: AuditBatch) {
        if batch.0.is_empty() {
            return;
        }
        if let Some(sink) = &self.sink {
            let mut f = sink.file.lock().unwrap_or_else(|p| p.into_inner());
            match f.write_all(&batch.0) {
                Ok(()) => crate::metrics::METRICS.audit_records(batch.1),
                Err(e) => tracing::error!(error = %e, "audit log write failed"),
            }
        }
    }
}

/// The log file opened for appending, created readable by root only.
fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Records written to the log with one `write(2)` ([`AuditLog::write`]),
/// each also sent to tracing when added.
#[derive(Debug, Default)]
pub struct AuditBatch(Vec<u8>, u64);

impl AuditBatch {
    /// Adds a record.
    pub fn add(&mut self, record: &AuditRecord<'_>) {
        let start = self.0.len();
        serde_json::to_writer(&mut self.0, record).expect("audit records serialize");
        let line = std::str::from_utf8(&self.0[start..]).unwrap_or("");
        match record.decision {
            Decision::Allow => tracing::info!(target: "wasmvol::audit", "{line}"),
            Decision::Deny => tracing::warn!(target: "wasmvol::audit", "{line}"),
        }
        self.0.push(b'\n');
        self.1 += 1;
    }
}

/// Replaces every value under a key named `secrets` with its keys only, at any depth.
pub fn redact(mut value: Value) -> Value {
    redact_in_place(&mut value);
    value
}

fn redact_in_place(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "secrets" {
                    *v = redacted_secrets(v);
                } else {
                    redact_in_place(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_in_place),
        _ => {}
    }
}

/// Secrets as `[["key", "<redacted>"], ...]` (they travel as key-value lists).
fn redacted_secrets(v: &Value) -> Value {
    let keys: Vec<Value> = match v {
        Value::Array(pairs) => pairs
            .iter()
            .filter_map(|p| p.get(0).cloned())
            .map(|k| Value::Array(vec![k, Value::from("<redacted>")]))
            .collect(),
        Value::Object(map) => map
            .keys()
            .map(|k| Value::Array(vec![Value::from(k.clone()), Value::from("<redacted>")]))
            .collect(),
        _ => Vec::new(),
    };
    Value::Array(keys)
}

/// Current UTC time as RFC 3339 with milliseconds.
///
/// Written digit by digit: every capability use stamps a record, and
/// `format!` of seven numbers cost more than the rest of the record.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as RFC 3339 UTC with milliseconds, as audit records stamp it (so
/// stamps compare in time order as text).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (y, m, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u32);
    put(5, 2, m);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    put(20, 3, d.subsec_millis());
    String::from_utf8_lossy(&out).into_owned()
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A record of `operation` by driver `d`, request `r`, with no arguments.
    fn record(operation: &str, decision: Decision) -> AuditRecord<'_> {
        AuditRecord {
            time: now_rfc3339(),
            driver: "d",
            component: "00".repeat(32),
            request_id: "r",
            operation,
            args: json!({}),
            decision,
            outcome: "ok".into(),
        }
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let v = redact(json!({
            "volume_id": "v1",
            "request": {"secrets": [["password", "hunter2"]], "parameters": [["a", "b"]]}
        }));
        let text = v.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("password"), "{text}");
        assert!(text.contains("\"parameters\":[[\"a\",\"b\"]]"), "{text}");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        let bytes = t.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            match i {
                4 | 7 => assert_eq!(*b, b'-', "{t}"),
                10 => assert_eq!(*b, b'T', "{t}"),
                13 | 16 => assert_eq!(*b, b':', "{t}"),
                19 => assert_eq!(*b, b'.', "{t}"),
                23 => assert_eq!(*b, b'Z', "{t}"),
                _ => assert!(b.is_ascii_digit(), "{t}"),
            }
        }
        assert!(
            t.as_str() > "2024-01-01" && t.as_str() < "2200-01-01",
            "{t}"
        );
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn reopening_follows_a_rotated_log_to_its_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotated = dir.path().join("audit.jsonl.1");
        let log = AuditLog::open(&path).unwrap();
        log.record(&record("before", Decision::Allow));
        std::fs::rename(&path, &rotated).unwrap();
        log.record(&record("moved", Decision::Allow));
        log.reopen().unwrap();
        log.record(&record("after", Decision::Allow));
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains("before") && old.contains("moved"), "{old}");
        assert!(!old.contains("after"), "{old}");
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains("\"operation\":\"after\""), "{new}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_failed_reopen_keeps_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("logs");
        let path = sub.join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        let moved = dir.path().join("moved");
        std::fs::rename(&sub, &moved).unwrap();
        assert!(log.reopen().is_err(), "the directory is gone");
        log.record(&record("still-logged", Decision::Allow));
        let text = std::fs::read_to_string(moved.join("audit.jsonl")).unwrap();
        assert!(text.contains("still-logged"), "{text}");
    }

    #[test]
    fn records_are_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for op in ["mount.bind", "state.put"] {
            log.record(&record(op, Decision::Deny));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["operation"], "state.put");
        assert_eq!(lines[1]["decision"], "deny");
    }
}
