//! The state of one call into a driver (the wasmtime store's data), and the
//! gate every capability use passes through.
//!
//! A fresh [`CallContext`] is built for each call and dropped after it, so no
//! handle, file or grant outlives the request it was made for.

use std::sync::Arc;

use cap_std::fs::Dir;
use serde_json::Value;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::audit::{now_rfc3339, redact, AuditLog, AuditRecord, Decision};
use crate::bindings::DriverError;
use crate::capability::table::{CapOp, Need};
use crate::policy::{DriverPolicy, StorageAccess};
use crate::store::state::StateStore;

/// Bytes of guest stdout/stderr kept per call (then forwarded to tracing).
const STDIO_CAPTURE_BYTES: usize = 64 * 1024;

/// What a driver shares across its calls: its policy, its open storage root
/// and the host's store and audit log.
#[derive(Debug)]
pub struct DriverEnv {
    /// The driver's policy entry.
    pub policy: DriverPolicy,
    /// The sha256 of the component serving (every audit record names it).
    pub component: crate::digest::Sha256Digest,
    /// The storage root opened once at load; `None` without a storage grant.
    pub root: Option<Dir>,
    /// The host's durable store.
    pub state: Arc<StateStore>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// What the driver's lvm uses last learnt of each volume group.
    pub lvm_groups: crate::sys::lvm_groups::GroupCache,
    /// Held across counting and attaching a loop device (`max_devices`).
    pub attach_lock: std::sync::Mutex<()>,
}

/// Why a capability use failed.
#[derive(Debug)]
pub enum CapError {
    /// Refused by policy or by confinement (escape attempt): audited as `deny`.
    Denied(String),
    /// Allowed but failed.
    Failed(DriverError),
}

impl From<DriverError> for CapError {
    fn from(e: DriverError) -> Self {
        CapError::Failed(e)
    }
}

/// Maps a host I/O error to what the driver sees. Permission errors from
/// path resolution (an escape) count as denials.
pub fn io_error(what: &str, e: std::io::Error) -> CapError {
    use std::io::ErrorKind::*;
    let msg = format!("{what}: {e}");
    match e.kind() {
        PermissionDenied => CapError::Denied(msg),
        NotFound => CapError::Failed(DriverError::NotFound(msg)),
        AlreadyExists => CapError::Failed(DriverError::AlreadyExists(msg)),
        InvalidInput | NotADirectory | IsADirectory | DirectoryNotEmpty => {
            CapError::Failed(DriverError::InvalidArgument(msg))
        }
        StorageFull | QuotaExceeded => CapError::Failed(DriverError::ResourceExhausted(msg)),
        _ => CapError::Failed(DriverError::Internal(msg)),
    }
}

/// Store data of one call.
pub struct CallContext {
    /// What the driver shares across calls.
    pub env: Arc<DriverEnv>,
    /// This call's id (logs, audit).
    pub request_id: String,
    /// When this call's deadline passes; a wait in a host call ends there.
    pub deadline: std::time::Instant,
    /// This call's resources (targets, root, devices, WASI).
    pub table: ResourceTable,
    wasi: WasiCtx,
    stdout: MemoryOutputPipe,
    memory_limit: u64,
    /// Set when the guest tried to grow memory past its limit.
    pub memory_exceeded: bool,
}

impl CallContext {
    /// Builds the context of one call: WASI with nothing in it but, where
    /// policy grants it, the storage root preopened at `/storage`.
    pub fn new(env: Arc<DriverEnv>, request_id: String) -> wasmtime::Result<Self> {
        let stdout = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stdout.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(storage) = env
            .policy
            .grants
            .storage
            .as_ref()
            .filter(|s| s.wasi_preopen)
        {
            let perms = match storage.access {
                StorageAccess::ReadOnly => wasmtime_wasi::FsPerms::ReadOnly,
                StorageAccess::ReadWrite => wasmtime_wasi::FsPerms::ReadWrite,
            };
            wasi.preopened_dir(&storage.root, "/storage", perms)?;
        }
        Ok(Self {
            memory_limit: env.policy.limits.memory_bytes,
            deadline: std::time::Instant::now()
                + std::time::Duration::from_millis(env.policy.limits.deadline_ms),
            env,
            request_id,
            table: ResourceTable::new(),
            wasi: wasi.build(),
            stdout,
            memory_exceeded: false,
        })
    }

    /// The driver's name, for logs and audit records.
    pub fn driver(&self) -> &str {
        self.env.policy.name.as_str()
    }

    /// Writes one audit record for this call, at once: a host killed later
    /// in the call (the kill-point tests do it after every capability
    /// operation) has still logged what the driver did up to then.
    pub fn audit(&mut self, operation: &str, args: Value, decision: Decision, outcome: String) {
        self.env.audit.record(&AuditRecord {
            time: now_rfc3339(),
            driver: self.env.policy.name.as_str(),
            component: self.env.component.to_hex(),
            request_id: &self.request_id,
            operation,
            args: redact(args),
            decision,
            outcome,
        });
    }

    /// The one place a capability use is checked and audited: refuses what
    /// policy does not grant (the operation's fixed needs from the
    /// [capability table](crate::capability::table), then `extra`, the needs
    /// its arguments add), lets go of the worker first if the operation may
    /// block, runs `f` otherwise, and records the decision and the outcome
    /// either way.
    pub fn gate<T>(
        &mut self,
        op: CapOp,
        extra: &[Need<'_>],
        args: Value,
        f: impl FnOnce(&mut Self) -> Result<T, CapError>,
    ) -> Result<T, DriverError> {
        self.gate_with(op, op.needs().iter().chain(extra).copied(), args, f)
    }

    /// [`Self::gate`] with the needs given in full instead of the
    /// operation's own: for a `volumes` operation on an NFS share opened as
    /// a root, whose storage needs become the share's ([`Need::on_share`]).
    pub fn gate_with<'n, T>(
        &mut self,
        op: CapOp,
        mut needs: impl Iterator<Item = Need<'n>>,
        args: Value,
        f: impl FnOnce(&mut Self) -> Result<T, CapError>,
    ) -> Result<T, DriverError> {
        let grants = &self.env.policy.grants;
        let metrics = &crate::metrics::METRICS;
        if let Err(why) = needs.try_for_each(|n| n.check(grants)) {
            let msg = format!("{} denied: {why}", op.name());
            metrics.decision(self.driver(), op.name(), false);
            self.audit(op.name(), args, Decision::Deny, why);
            return Err(DriverError::PermissionDenied(msg));
        }
        if op.may_block() {
            crate::runtime::sync_calls::may_block();
        }
        let done = f(self);
        crate::fault::point("capability", op.name());
        metrics.decision(
            self.driver(),
            op.name(),
            !matches!(done, Err(CapError::Denied(_))),
        );
        match done {
            Ok(v) => {
                self.audit(op.name(), args, Decision::Allow, "ok".into());
                Ok(v)
            }
            Err(CapError::Denied(why)) => {
                self.audit(op.name(), args, Decision::Deny, why.clone());
                Err(DriverError::PermissionDenied(why))
            }
            Err(CapError::Failed(e)) => {
                self.audit(op.name(), args, Decision::Allow, format!("error: {e:?}"));
                Err(e)
            }
        }
    }

    /// The last non-empty line the guest printed (panic messages end up here).
    pub fn last_stdio_line(&self) -> Option<String> {
        let bytes = self.stdout.contents();
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .map(|l| crate::capability::log::escaped(&l.chars().take(512).collect::<String>()))
    }

    /// Ends the call: forwards its output to tracing.
    pub fn finish(&mut self) {
        self.flush_stdio();
    }

    /// Forwards what the guest printed to tracing.
    fn flush_stdio(&self) {
        let bytes = self.stdout.contents();
        for line in String::from_utf8_lossy(&bytes).lines() {
            let line = crate::capability::log::escaped(line);
            tracing::info!(target: "wasmvol::driver", driver = self.driver(), request_id = %self.request_id, "stdio: {line}");
        }
    }
}

impl CallContext {
    /// The view `wasi:io` works through: this call's table and deadline.
    pub fn io(&mut self) -> crate::capability::wasi_io::CallIo<'_> {
        crate::capability::wasi_io::CallIo::new(&mut self.table, self.deadline)
    }
}

impl WasiView for CallContext {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for CallContext {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_limit {
            self.memory_exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes reached",
                self.memory_limit
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A call context with no wasm behind it, for unit tests of the gate and
/// of each capability: a temp dir holding the storage root, the state store
/// and the audit log.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::policy::{DriverName, DriverPolicy, Grants, Limits, StorageGrant};

    /// One call's context over a temp dir.
    pub struct TestCall {
        /// The context the capabilities run on.
        pub ctx: CallContext,
        /// Holds `root/` (the storage root), `outside/`, the store and the log.
        pub dir: tempfile::TempDir,
    }

    impl TestCall {
        /// A call of driver `t` with `grants`; the storage root (when
        /// `storage` is given) is `<dir>/root`.
        pub fn new(storage: Option<StorageAccess>, grants: Grants) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root_path = dir.path().join("root");
            std::fs::create_dir_all(&root_path).unwrap();
            std::fs::create_dir_all(dir.path().join("outside")).unwrap();
            let grants = Grants {
                storage: storage.map(|access| StorageGrant {
                    root: root_path.clone(),
                    access,
                    wasi_preopen: false,
                }),
                ..grants
            };
            let root = grants.storage.as_ref().map(|_| {
                cap_std::fs::Dir::open_ambient_dir(&root_path, cap_std::ambient_authority())
                    .unwrap()
            });
            let env = DriverEnv {
                policy: DriverPolicy {
                    name: DriverName::parse("t").unwrap(),
                    component: "t.wasm".into(),
                    pin: crate::policy::ComponentPin::digest(crate::digest::Sha256Digest::of(b"t")),
                    grants,
                    limits: Limits::default(),
                    csi: None,
                    flex: None,
                },
                component: crate::digest::Sha256Digest::of(b"t"),
                root,
                state: Arc::new(StateStore::open(&dir.path().join("state.redb")).unwrap()),
                audit: Arc::new(AuditLog::open(&dir.path().join("audit.jsonl")).unwrap()),
                lvm_groups: Default::default(),
                attach_lock: Default::default(),
            };
            let ctx = CallContext::new(Arc::new(env), "test-1".into()).unwrap();
            Self { ctx, dir }
        }

        /// Ends the call and returns every audit record written.
        pub fn audit(&mut self) -> Vec<Value> {
            self.ctx.finish();
            std::fs::read_to_string(self.dir.path().join("audit.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TestCall;
    use super::*;
    use crate::policy::Grants;

    #[test]
    fn the_gate_denies_what_is_not_granted_audits_it_and_never_runs_the_operation() {
        let mut t = TestCall::new(Some(StorageAccess::ReadOnly), Grants::default());
        let mut ran = false;
        let denied = t.ctx.gate(
            CapOp::VolumesWriteFile,
            &[],
            serde_json::json!({"path": "x"}),
            |_| {
                ran = true;
                Ok(())
            },
        );
        assert!(matches!(denied, Err(DriverError::PermissionDenied(m)) if m.contains("read-only")));
        assert!(!ran, "a denied operation ran");
        // Needs from the arguments are checked by the gate too.
        let too_big = t.ctx.gate(
            CapOp::VolumesExists,
            &[Need::FileBytes(1)],
            Value::Null,
            |_| Ok(()),
        );
        assert!(
            matches!(too_big, Err(DriverError::PermissionDenied(m)) if m.contains("max_file_bytes"))
        );
        let allowed = t
            .ctx
            .gate(CapOp::VolumesExists, &[], Value::Null, |_| Ok(7));
        assert_eq!(allowed.unwrap(), 7);
        let failed = t.ctx.gate(
            CapOp::VolumesExists,
            &[],
            Value::Null,
            |_| -> Result<(), _> { Err(CapError::Failed(DriverError::NotFound("gone".into()))) },
        );
        assert!(matches!(failed, Err(DriverError::NotFound(_))));
        let records = t.audit();
        let summary: Vec<(String, String)> = records
            .iter()
            .map(|r| {
                (
                    format!(
                        "{}:{}",
                        r["operation"].as_str().unwrap(),
                        r["decision"].as_str().unwrap()
                    ),
                    r["outcome"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(summary[0].0, "volumes.write-file:deny");
        assert_eq!(summary[0].1, "storage root is granted read-only");
        assert_eq!(summary[1].0, "volumes.exists:deny");
        assert_eq!(summary[2], ("volumes.exists:allow".into(), "ok".into()));
        assert!(
            summary[3].1.contains("NotFound(\"gone\")"),
            "{:?}",
            summary[3]
        );
        assert!(records
            .iter()
            .all(|r| r["driver"] == "t" && r["request_id"] == "test-1"));
    }
}
