//! Granted against used: what each driver did with its grants, read from
//! the audit log, and each grant wider than that use (`wasmvol audit
//! --log`). The log already holds every decision; this joins it with the
//! policy so a security team sees which grants to narrow.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::capability::table::{CapOp, Capability, Need};
use crate::policy::{Grants, StorageAccess};

/// One operation's uses by one driver.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OperationUse {
    /// Uses policy allowed.
    pub allowed: u64,
    /// Uses refused (or contained faults of a call).
    pub denied: u64,
    /// The first use's stamp.
    pub first: String,
    /// The last use's stamp.
    pub last: String,
}

/// What one driver did, by the log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DriverUse {
    /// Per operation (`volumes.create-dir`, `call:create-volume`).
    pub operations: BTreeMap<String, OperationUse>,
    /// Filesystem types it made or mounted.
    pub fs_types: BTreeSet<String>,
    /// Mount options it passed.
    pub mount_options: BTreeSet<String>,
    /// Allowed uses that wrote its storage root.
    pub storage_writes: u64,
    /// Driver calls that carried secrets.
    pub calls_with_secrets: u64,
}

/// The log, read: per driver what it did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogUse {
    /// By driver name.
    pub drivers: BTreeMap<String, DriverUse>,
    /// Records read (within the time window).
    pub records: u64,
    /// Lines that were not audit records (a torn last line, say).
    pub unreadable: u64,
}

/// Parses `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}`: a number then s, m, h or d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}`: a number then s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// The log at `path` and its rotations beside it (`path.1`, `path.2`, …,
/// each maybe gzipped as logrotate's `compress` leaves it: `path.2.gz`),
/// oldest first.
fn files(path: &Path) -> Vec<PathBuf> {
    let rotation = |n: u32, suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}{suffix}"));
        PathBuf::from(p)
    };
    let mut out: Vec<PathBuf> = (1..)
        .map_while(|n| {
            [rotation(n, ""), rotation(n, ".gz")]
                .into_iter()
                .find(|p| p.exists())
        })
        .collect();
    out.reverse();
    out.push(path.to_owned());
    out
}

/// A log file's lines, gunzipped when its name ends in `.gz`.
fn lines(file: &Path) -> std::io::Result<Box<dyn BufRead>> {
    let f = std::fs::File::open(file)?;
    Ok(if file.extension().is_some_and(|e| e == "gz") {
        Box::new(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(
            f,
        )))
    } else {
        Box::new(std::io::BufReader::new(f))
    })
}

impl LogUse {
    /// Reads the log at `path` (and its rotations), keeping records stamped
    /// at or after `since` (RFC 3339, as the log writes it).
    pub fn read(path: &Path, since: Option<&str>) -> std::io::Result<Self> {
        let mut out = Self::default();
        for file in files(path) {
            for line in lines(&file)?.lines() {
                let line = line.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", file.display()))
                })?;
                out.add(&line, since);
            }
        }
        Ok(out)
    }

    /// Reads log text already in memory (one record per line): what
    /// [`Self::read`] does for each file, for tools and the fuzzer.
    pub fn from_text(text: &str, since: Option<&str>) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            out.add(line, since);
        }
        out
    }

    fn add(&mut self, line: &str, since: Option<&str>) {
        if line.trim().is_empty() {
            return;
        }
        // Typed and borrowed: a gigabyte of log is read in seconds, and
        // the arguments are looked into only where a grant depends on them.
        let Ok(r) = serde_json::from_str::<Line<'_>>(line) else {
            self.unreadable += 1;
            return;
        };
        let time = r.time.as_ref();
        if since.is_some_and(|s| time < s) {
            return;
        }
        self.records += 1;
        let d = match self.drivers.get_mut(r.driver.as_ref()) {
            Some(d) => d,
            None => self.drivers.entry(r.driver.to_string()).or_default(),
        };
        let op = r.operation.as_ref();
        let u = match d.operations.get_mut(op) {
            Some(u) => u,
            None => d.operations.entry(op.to_owned()).or_default(),
        };
        if u.first.is_empty() {
            u.first = time.to_owned();
        }
        u.last.clear();
        u.last.push_str(time);
        if r.decision != "allow" {
            u.denied += 1;
            return;
        }
        u.allowed += 1;
        let args = r
            .args
            .map(|a| serde_json::from_str::<Args>(a.get()).unwrap_or_default());
        let args = args.unwrap_or_default();
        if op.starts_with("call:") {
            if args
                .secrets
                .as_ref()
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty())
            {
                d.calls_with_secrets += 1;
            }
            return;
        }
        if let Some(fs) = args.fs.as_ref().and_then(Value::as_str) {
            d.fs_types.insert(fs.to_owned());
        }
        if let Some(options) = args.options.as_ref().and_then(Value::as_array) {
            d.mount_options
                .extend(options.iter().filter_map(|o| o.as_str().map(str::to_owned)));
        }
        if CapOp::from_name(op).is_some_and(|o| o.needs().contains(&Need::StorageWrite)) {
            d.storage_writes += 1;
        }
    }
}

/// The fields of an audit line the usage report reads.
#[derive(serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    driver: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    operation: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    decision: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    args: Option<&'a serde_json::value::RawValue>,
}

/// The arguments a grant depends on (anything else in them is skipped).
#[derive(serde::Deserialize, Default)]
struct Args {
    #[serde(default)]
    secrets: Option<Value>,
    #[serde(default)]
    fs: Option<Value>,
    #[serde(default)]
    options: Option<Value>,
}

/// Each grant wider than what `used` shows the driver did.
pub fn wider_than_used(grants: &Grants, used: Option<&DriverUse>) -> Vec<String> {
    let empty = DriverUse::default();
    let used = used.unwrap_or(&empty);
    let used_caps: BTreeSet<&'static str> = used
        .operations
        .iter()
        .filter(|(_, u)| u.allowed > 0)
        .filter_map(|(op, _)| CapOp::from_name(op))
        .flat_map(|op| op.needs().iter().map(|n| n.capability().name()))
        .collect();
    let mut out = Vec::new();
    for cap in Capability::granted(grants) {
        if cap == Capability::Secrets {
            if used.calls_with_secrets == 0 {
                out.push("secrets: granted, but no call received a secret".to_owned());
            }
        } else if !used_caps.contains(cap.name()) {
            out.push(format!("{}: granted, never used", cap.name()));
        }
    }
    if let Some(s) = &grants.storage {
        if s.access == StorageAccess::ReadWrite
            && used_caps.contains(Capability::Storage.name())
            && used.storage_writes == 0
        {
            out.push("storage: granted read-write, only read".to_owned());
        }
    }
    for fs in &grants.fs_types {
        if !used.fs_types.contains(fs.name()) {
            out.push(format!("fs_types: `{}` granted, never used", fs.name()));
        }
    }
    for o in &grants.mount_options {
        if !used.mount_options.contains(o) {
            out.push(format!("mount_options: `{o}` granted, never used"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(time: &str, driver: &str, op: &str, decision: &str, args: Value) -> String {
        serde_json::json!({
            "time": time, "driver": driver, "request_id": "r", "operation": op,
            "args": args, "decision": decision, "outcome": "ok",
        })
        .to_string()
    }

    #[test]
    fn uses_are_counted_per_driver_and_operation_within_the_window() {
        let mut u = LogUse::default();
        let since = Some("2026-12-03T10:00:00.000Z");
        u.add(
            &record(
                "2026-12-03T09:59:59.999Z",
                "a",
                "volumes.create-dir",
                "allow",
                Value::Null,
            ),
            since,
        );
        u.add(
            &record(
                "2026-12-03T10:00:00.000Z",
                "a",
                "volumes.create-dir",
                "allow",
                Value::Null,
            ),
            since,
        );
        u.add(
            &record(
                "2026-12-03T10:00:01.000Z",
                "a",
                "volumes.create-dir",
                "deny",
                Value::Null,
            ),
            since,
        );
        u.add(
            &record(
                "2026-12-03T10:00:02.000Z",
                "a",
                "device.mount-onto",
                "allow",
                serde_json::json!({"fs": "ext4", "options": ["noatime"]}),
            ),
            since,
        );
        u.add(
            &record(
                "2026-12-03T10:00:03.000Z",
                "a",
                "call:node-stage",
                "allow",
                serde_json::json!({"secrets": [["k", "<redacted>"]]}),
            ),
            since,
        );
        u.add("{torn", since);
        assert_eq!(u.records, 4);
        assert_eq!(u.unreadable, 1);
        let a = &u.drivers["a"];
        let cd = &a.operations["volumes.create-dir"];
        assert_eq!((cd.allowed, cd.denied), (1, 1));
        assert_eq!(cd.first, "2026-12-03T10:00:00.000Z");
        assert_eq!(cd.last, "2026-12-03T10:00:01.000Z");
        assert_eq!(a.storage_writes, 1);
        assert_eq!(a.fs_types, ["ext4".to_owned()].into());
        assert_eq!(a.mount_options, ["noatime".to_owned()].into());
        assert_eq!(a.calls_with_secrets, 1);
    }

    /// logrotate with `compress` and `delaycompress`: the newest rotation
    /// plain, older ones gzipped; all are read, oldest first.
    #[test]
    fn rotations_are_read_plain_and_gzipped() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let line = |t: &str, op: &str| {
            format!(
                r#"{{"time":"{t}","driver":"d","operation":"{op}","decision":"allow","args":{{}}}}"#
            ) + "\n"
        };
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(dir.path().join("audit.jsonl.2.gz")).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(line("2026-12-01T00:00:00.000Z", "call:create-volume").as_bytes())
            .unwrap();
        gz.finish().unwrap();
        std::fs::write(
            dir.path().join("audit.jsonl.1"),
            line("2026-12-02T00:00:00.000Z", "mount.bind"),
        )
        .unwrap();
        std::fs::write(&log, line("2026-12-03T00:00:00.000Z", "mount.bind")).unwrap();
        let u = LogUse::read(&log, None).unwrap();
        assert_eq!((u.records, u.unreadable), (3, 0));
        let d = &u.drivers["d"];
        assert_eq!(d.operations["call:create-volume"].allowed, 1);
        let bind = &d.operations["mount.bind"];
        assert_eq!(
            (bind.allowed, bind.first.as_str()),
            (2, "2026-12-02T00:00:00.000Z")
        );
        // A gzipped rotation that is not gzip is an error naming it.
        std::fs::write(dir.path().join("audit.jsonl.2.gz"), b"not gzip").unwrap();
        let e = LogUse::read(&log, None).unwrap_err().to_string();
        assert!(e.contains("audit.jsonl.2.gz"), "{e}");
    }

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        for bad in ["", "h", "5w", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
