//! The calls a front end can make into a driver, their answers, and how a
//! call can fail.
//!
//! Requests are the WIT world's own types; node calls carry host paths
//! beside them, which the host turns into target handles for that call only.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bindings::{controller, node, types, DriverError};

/// The driver-call table: every call a front end can make into a driver,
/// declared once. Per row: the [`Operation`] variant and its payload, the
/// name (CLI, audit log, JSON), the WIT export it calls with the exact
/// parameter and result types the host calls it at, and where its secrets
/// are.
///
/// `$then` is a macro that receives the rows: [`operations!`] here makes
/// [`Operation`], [`OPERATION_NAMES`], [`Operation::from_json`],
/// [`Operation::name`], [`Operation::strip_secrets`] and the path check;
/// `runtime::exports` makes the load-time lookup, the typecheck and the
/// dispatch. Adding a WIT function is a change in `wit/`, one row here, the
/// SDK and the front end that uses it.
///
/// Names in the rows resolve where `$then` expands: both users import
/// `controller`, `node`, `types`, [`WithPaths`] and [`Answer`], and
/// `runtime::exports` defines `IDENTITY`, `CONTROLLER`, `NODE` and `Target`.
macro_rules! driver_calls {
    ($then:ident) => {
        $then! {
            /// identity.info: name, version, features.
            Info => "info", IDENTITY."info"() -> types::DriverInfo;
            /// controller.create-volume.
            CreateVolume(controller::CreateVolumeRequest) => "create-volume",
                CONTROLLER."create-volume"(controller::CreateVolumeRequest) -> Answer<types::Volume>,
                secrets at secrets;
            /// controller.delete-volume.
            DeleteVolume(controller::DeleteVolumeRequest) => "delete-volume",
                CONTROLLER."delete-volume"(controller::DeleteVolumeRequest) -> Answer<()>,
                secrets at secrets;
            /// controller.controller-publish (attach).
            ControllerPublish(controller::ControllerPublishRequest) => "controller-publish",
                CONTROLLER."controller-publish"(controller::ControllerPublishRequest) -> Answer<types::KeyValues>,
                secrets at secrets;
            /// controller.controller-unpublish (detach).
            ControllerUnpublish(controller::ControllerUnpublishRequest) => "controller-unpublish",
                CONTROLLER."controller-unpublish"(controller::ControllerUnpublishRequest) -> Answer<()>,
                secrets at secrets;
            /// controller.validate-volume-capabilities.
            ValidateVolumeCapabilities(controller::ValidateRequest) => "validate-volume-capabilities",
                CONTROLLER."validate-volume-capabilities"(controller::ValidateRequest) -> Answer<controller::ValidateResponse>,
                secrets at secrets;
            /// controller.list-volumes.
            ListVolumes(controller::ListVolumesRequest) => "list-volumes",
                CONTROLLER."list-volumes"(controller::ListVolumesRequest) -> Answer<controller::ListVolumesResponse>;
            /// controller.get-capacity.
            GetCapacity(controller::GetCapacityRequest) => "get-capacity",
                CONTROLLER."get-capacity"(controller::GetCapacityRequest) -> Answer<controller::GetCapacityResponse>;
            /// controller.create-snapshot.
            CreateSnapshot(controller::CreateSnapshotRequest) => "create-snapshot",
                CONTROLLER."create-snapshot"(controller::CreateSnapshotRequest) -> Answer<types::Snapshot>,
                secrets at secrets;
            /// controller.delete-snapshot.
            DeleteSnapshot(controller::DeleteSnapshotRequest) => "delete-snapshot",
                CONTROLLER."delete-snapshot"(controller::DeleteSnapshotRequest) -> Answer<()>,
                secrets at secrets;
            /// controller.list-snapshots.
            ListSnapshots(controller::ListSnapshotsRequest) => "list-snapshots",
                CONTROLLER."list-snapshots"(controller::ListSnapshotsRequest) -> Answer<controller::ListSnapshotsResponse>,
                secrets at secrets;
            /// controller.expand-volume.
            ControllerExpand(controller::ControllerExpandRequest) => "controller-expand",
                CONTROLLER."expand-volume"(controller::ControllerExpandRequest) -> Answer<controller::ControllerExpandResponse>,
                secrets at secrets;
            /// controller.get-volume.
            ControllerGetVolume(controller::GetVolumeRequest) => "controller-get-volume",
                CONTROLLER."get-volume"(controller::GetVolumeRequest) -> Answer<controller::ListedVolume>;
            /// controller.modify-volume.
            ModifyVolume(controller::ModifyVolumeRequest) => "modify-volume",
                CONTROLLER."modify-volume"(controller::ModifyVolumeRequest) -> Answer<()>,
                secrets at secrets;
            /// controller.get-snapshot.
            GetSnapshot(controller::GetSnapshotRequest) => "get-snapshot",
                CONTROLLER."get-snapshot"(controller::GetSnapshotRequest) -> Answer<types::Snapshot>,
                secrets at secrets;
            /// controller.create-group-snapshot.
            CreateGroupSnapshot(controller::CreateGroupSnapshotRequest) => "create-group-snapshot",
                CONTROLLER."create-group-snapshot"(controller::CreateGroupSnapshotRequest) -> Answer<types::GroupSnapshot>,
                secrets at secrets;
            /// controller.delete-group-snapshot.
            DeleteGroupSnapshot(controller::GroupSnapshotRequest) => "delete-group-snapshot",
                CONTROLLER."delete-group-snapshot"(controller::GroupSnapshotRequest) -> Answer<()>,
                secrets at secrets;
            /// controller.get-group-snapshot.
            GetGroupSnapshot(controller::GroupSnapshotRequest) => "get-group-snapshot",
                CONTROLLER."get-group-snapshot"(controller::GroupSnapshotRequest) -> Answer<types::GroupSnapshot>,
                secrets at secrets;
            /// node.stage, at the staging path.
            NodeStage(WithPaths<node::StageRequest>) => "node-stage",
                NODE."stage"(Target, node::StageRequest) -> Answer<()>,
                secrets at request.secrets;
            /// node.unstage, at the staging path.
            NodeUnstage(WithPaths<node::UnstageRequest>) => "node-unstage",
                NODE."unstage"(Target, node::UnstageRequest) -> Answer<()>;
            /// node.publish, at the target (and staging) path.
            NodePublish(WithPaths<node::PublishRequest>) => "node-publish",
                NODE."publish"(Target, Option<Target>, node::PublishRequest) -> Answer<()>,
                secrets at request.secrets;
            /// node.unpublish, at the target path.
            NodeUnpublish(WithPaths<node::UnpublishRequest>) => "node-unpublish",
                NODE."unpublish"(Target, node::UnpublishRequest) -> Answer<()>;
            /// node.get-volume-stats, at the volume path.
            NodeGetVolumeStats(WithPaths<node::VolumeStatsRequest>) => "node-get-volume-stats",
                NODE."get-volume-stats"(Target, node::VolumeStatsRequest) -> Answer<node::VolumeStats>;
            /// node.expand-volume, at the volume path.
            NodeExpand(WithPaths<node::NodeExpandRequest>) => "node-expand",
                NODE."expand-volume"(Target, node::NodeExpandRequest) -> Answer<u64>,
                secrets at request.secrets;
            /// node.get-info.
            NodeGetInfo => "node-get-info", NODE."get-info"() -> Answer<node::NodeInfo>;
        }
    };
}
pub(crate) use driver_calls;

/// What a driver export answers: its result, or the driver's error.
pub type Answer<T> = Result<T, DriverError>;

/// Makes the [`Operation`] side of the [`driver_calls!`] table.
macro_rules! operations {
    ($($(#[doc = $doc:literal])* $op:ident $(($req:ty))? => $name:literal,
        $iface:ident . $export:literal ($($param:ty),*) -> $ret:ty
        $(, secrets at $($path:ident).+)?;)*) => {
        /// One call into a driver.
        #[derive(Debug, Clone, Serialize)]
        #[serde(tag = "operation", content = "request")]
        pub enum Operation {
            $($(#[doc = $doc])* #[serde(rename = $name)] $op $(($req))?,)*
        }

        /// Operation names as the CLI and audit log spell them.
        pub const OPERATION_NAMES: &[&str] = &[$($name,)*];

        impl Operation {
            /// Builds an operation from its name and a JSON request (the CLI's edge).
            pub fn from_json(name: &str, request: Value) -> Result<Self, String> {
                #[allow(dead_code)]
                fn req<T: serde::de::DeserializeOwned>(name: &str, v: Value) -> Result<T, String> {
                    serde_json::from_value(v).map_err(|e| format!("request for `{name}`: {e}"))
                }
                let _ = &request;
                $(if name == $name {
                    let op = operations!(@build $op, name, request $(, $req)?);
                    op.check_paths()?;
                    return Ok(op);
                })*
                Err(format!(
                    "unknown operation `{name}` (one of: {})",
                    OPERATION_NAMES.join(", ")
                ))
            }

            /// The operation's name (as in [`OPERATION_NAMES`]).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Operation::$op { .. } => $name,)*
                }
            }

            /// Empties every secrets field (for drivers without the secrets grant).
            pub fn strip_secrets(&mut self) {
                $($(
                    if let Operation::$op(r) = self {
                        r$(.$path)+.clear();
                    }
                )?)*
            }

            /// The host paths a node call carries (none for the others).
            fn paths(&self) -> Vec<&std::path::Path> {
                match self {
                    $(op @ Operation::$op { .. } => operations!(@paths $iface, op, $op $(, $req)?),)*
                }
            }
        }
    };
    (@build $op:ident, $n:ident, $r:ident) => { Operation::$op };
    (@build $op:ident, $n:ident, $r:ident, $req:ty) => { Operation::$op(req($n, $r)?) };
    (@paths NODE, $o:ident, $op:ident, $req:ty) => {{
        let Operation::$op(r) = $o else { unreachable!("matched by variant") };
        r.paths()
    }};
    (@paths $iface:ident, $o:ident, $op:ident $(, $req:ty)?) => {{
        let _ = $o;
        Vec::new()
    }};
}

driver_calls!(operations);

/// A node request plus the host paths kubelet passed with it.
///
/// `target_path` is the publish target (stage/unstage: the staging path;
/// stats/expand: the volume path); `staging_path` is set for publish when
/// the driver stages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithPaths<R> {
    /// The publish target, staging path or volume path of this call.
    pub target_path: PathBuf,
    /// The staging path, for publish of a staged volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_path: Option<PathBuf>,
    /// The driver-world request.
    #[serde(flatten)]
    pub request: R,
}

impl Operation {
    /// Checks a node call's host paths as the front ends do at their edge
    /// ([`RequestPath`](crate::host_path::RequestPath)), so a path from the
    /// CLI is held to the same shape as one from kubelet.
    fn check_paths(&self) -> Result<(), String> {
        let paths = self.paths();
        for p in paths {
            let text = p.to_str().ok_or("a path is not UTF-8")?;
            crate::host_path::RequestPath::parse(text)
                .map_err(|why| format!("path `{text}` {why}"))?;
        }
        Ok(())
    }
}

impl<R> WithPaths<R> {
    /// The host paths of the call.
    fn paths(&self) -> Vec<&std::path::Path> {
        std::iter::once(self.target_path.as_path())
            .chain(self.staging_path.as_deref())
            .collect()
    }
}

/// What a call returned.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// Answer of `info`.
    Info(types::DriverInfo),
    /// A created volume.
    Volume(types::Volume),
    /// A call with no answer but success.
    Done,
    /// Controller publish's publish context.
    PublishContext(types::KeyValues),
    /// Validate's answer.
    Validated(controller::ValidateResponse),
    /// A page of volumes.
    Volumes(controller::ListVolumesResponse),
    /// Get-capacity's answer.
    Capacity(controller::GetCapacityResponse),
    /// A created snapshot.
    Snapshot(types::Snapshot),
    /// A page of snapshots.
    Snapshots(controller::ListSnapshotsResponse),
    /// Controller expansion's answer.
    Expanded(controller::ControllerExpandResponse),
    /// One volume and its status (get-volume).
    ListedVolume(controller::ListedVolume),
    /// A group snapshot.
    GroupSnapshot(types::GroupSnapshot),
    /// Node volume stats.
    VolumeStats(node::VolumeStats),
    /// Node expansion's new size.
    CapacityBytes(u64),
    /// Node info.
    NodeInfo(node::NodeInfo),
}

/// Declares one accessor per answer kind, so a front end takes the answer
/// it expects or a typed error, with no match of its own.
macro_rules! answers {
    ($($fn:ident => $variant:ident($ty:ty);)*) => {
        impl Outcome {
            $(
                #[doc = concat!("The answer as `", stringify!($variant), "`, or [`CallError::UnexpectedAnswer`].")]
                pub fn $fn(self) -> Result<$ty, CallError> {
                    match self {
                        Outcome::$variant(v) => Ok(v),
                        other => Err(CallError::UnexpectedAnswer(format!("{other:?}"))),
                    }
                }
            )*
        }

        $(impl AnswerKind for $ty {
            fn outcome(self) -> Outcome {
                Outcome::$variant(self)
            }
        })*
    };
}

/// A driver export's successful result, as the one [`Outcome`] it stands for.
pub(crate) trait AnswerKind {
    /// The outcome front ends read.
    fn outcome(self) -> Outcome;
}

impl AnswerKind for () {
    fn outcome(self) -> Outcome {
        Outcome::Done
    }
}

/// A driver export's whole result (an answer or the driver's error) as an
/// [`Outcome`]; the dispatch uses it for every export.
pub(crate) trait IntoOutcome {
    /// The outcome, or the driver's error.
    fn into_outcome(self) -> Answer<Outcome>;
}

impl<T: AnswerKind> IntoOutcome for Answer<T> {
    fn into_outcome(self) -> Answer<Outcome> {
        self.map(AnswerKind::outcome)
    }
}

/// `info` cannot fail: a driver always says who it is.
impl IntoOutcome for types::DriverInfo {
    fn into_outcome(self) -> Answer<Outcome> {
        Ok(Outcome::Info(self))
    }
}

answers! {
    into_info => Info(types::DriverInfo);
    into_volume => Volume(types::Volume);
    into_publish_context => PublishContext(types::KeyValues);
    into_validated => Validated(controller::ValidateResponse);
    into_volumes => Volumes(controller::ListVolumesResponse);
    into_capacity => Capacity(controller::GetCapacityResponse);
    into_snapshot => Snapshot(types::Snapshot);
    into_snapshots => Snapshots(controller::ListSnapshotsResponse);
    into_expanded => Expanded(controller::ControllerExpandResponse);
    into_listed_volume => ListedVolume(controller::ListedVolume);
    into_group_snapshot => GroupSnapshot(types::GroupSnapshot);
    into_volume_stats => VolumeStats(node::VolumeStats);
    into_capacity_bytes => CapacityBytes(u64);
    into_node_info => NodeInfo(node::NodeInfo);
}

/// How every front end words a driver error: its kind in words (Flex
/// messages), its gRPC code (CSI) and the driver's message. The one table of it.
pub fn error_parts(e: &DriverError) -> (&'static str, tonic::Code, &str) {
    use tonic::Code;
    match e {
        DriverError::InvalidArgument(m) => ("invalid argument", Code::InvalidArgument, m),
        DriverError::NotFound(m) => ("not found", Code::NotFound, m),
        DriverError::AlreadyExists(m) => ("already exists", Code::AlreadyExists, m),
        DriverError::FailedPrecondition(m) => ("failed precondition", Code::FailedPrecondition, m),
        DriverError::ResourceExhausted(m) => ("resource exhausted", Code::ResourceExhausted, m),
        DriverError::OutOfRange(m) => ("out of range", Code::OutOfRange, m),
        DriverError::Aborted(m) => ("aborted", Code::Aborted, m),
        DriverError::Unavailable(m) => ("unavailable", Code::Unavailable, m),
        DriverError::PermissionDenied(m) => ("permission denied", Code::PermissionDenied, m),
        DriverError::Unimplemented(m) => ("unimplemented", Code::Unimplemented, m),
        DriverError::Internal(m) => ("internal", Code::Internal, m),
    }
}

/// Longest id CSI allows (volume, snapshot and node ids), in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Checks an id a driver answered: 1 to [`MAX_ID_BYTES`] bytes and no
/// control character (a NUL, a newline), so it can travel to kubelet, into
/// records and logs as it is. The host never makes a path of it.
fn check_id(what: &str, id: &str) -> Result<(), String> {
    let shown = || {
        id.chars()
            .take(64)
            .flat_map(char::escape_default)
            .collect::<String>()
    };
    if id.is_empty() {
        return Err(format!("an empty {what}"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "a {what} of {} bytes (at most {MAX_ID_BYTES}): `{}…`",
            id.len(),
            shown()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("a {what} with a control character: `{}`", shown()));
    }
    Ok(())
}

impl Outcome {
    /// Checks every id in a driver's answer (1 to [`MAX_ID_BYTES`] bytes, no control character); the error
    /// says which one is wrong and how.
    pub fn check_ids(&self) -> Result<(), String> {
        let volume = |v: &types::Volume| check_id("volume id", &v.volume_id);
        let snapshot = |s: &types::Snapshot| {
            check_id("snapshot id", &s.snapshot_id)?;
            check_id("source volume id", &s.source_volume_id)?;
            if s.group_snapshot_id.is_empty() {
                Ok(())
            } else {
                check_id("group snapshot id", &s.group_snapshot_id)
            }
        };
        match self {
            Outcome::Volume(v) => volume(v),
            Outcome::ListedVolume(e) => volume(&e.volume),
            Outcome::GroupSnapshot(g) => {
                check_id("group snapshot id", &g.group_snapshot_id)?;
                g.snapshots.iter().try_for_each(snapshot)
            }
            Outcome::Volumes(l) => l.entries.iter().try_for_each(|e| volume(&e.volume)),
            Outcome::Snapshot(s) => snapshot(s),
            Outcome::Snapshots(l) => l.entries.iter().try_for_each(snapshot),
            // An empty node id means "the host's default".
            Outcome::NodeInfo(n) if !n.node_id.is_empty() => check_id("node id", &n.node_id),
            _ => Ok(()),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The driver answered with an error.
    #[error("driver error: {0:?}")]
    Driver(DriverError),
    /// The request was malformed before it reached the driver.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The driver ran past its deadline and was stopped.
    #[error("driver exceeded its deadline of {0} ms")]
    Deadline(u64),
    /// The driver tried to use more memory than its limit.
    #[error("driver exceeded its memory limit of {0} bytes")]
    Memory(u64),
    /// The driver answered something the host refuses to pass on (an id
    /// that is empty, too long or holds a control character).
    #[error("driver answered {0}, which the host refuses")]
    BadAnswer(String),
    /// The call answered another kind of outcome than its operation has (a host bug).
    #[error("unexpected answer {0}")]
    UnexpectedAnswer(String),
    /// The driver trapped (a bug or an invalid handle).
    #[error("driver trapped: {0}")]
    Trapped(String),
    /// Too many calls in flight for this driver.
    #[error("driver is busy ({0} calls in flight)")]
    Busy(u32),
    /// No driver of that name.
    #[error("no driver named `{0}`")]
    UnknownDriver(String),
}

/// Every class of [`CallError`] as the CLI prints and exits with it: a
/// driver's error by its WIT name, then the host's own reasons. The exit
/// status is 10 plus the position here, so scripts can tell them apart.
const CLASSES: &[&str] = &[
    "invalid-argument",
    "not-found",
    "already-exists",
    "failed-precondition",
    "resource-exhausted",
    "out-of-range",
    "aborted",
    "unavailable",
    "permission-denied",
    "unimplemented",
    "internal",
    "invalid-request",
    "deadline",
    "memory",
    "refused-answer",
    "unexpected-answer",
    "trapped",
    "busy",
    "unknown-driver",
];

impl CallError {
    /// The error's class, e.g. `not-found` (a driver's) or `trapped` (the host's).
    pub fn class(&self) -> &'static str {
        use DriverError as D;
        match self {
            CallError::Driver(e) => match e {
                D::InvalidArgument(_) => CLASSES[0],
                D::NotFound(_) => CLASSES[1],
                D::AlreadyExists(_) => CLASSES[2],
                D::FailedPrecondition(_) => CLASSES[3],
                D::ResourceExhausted(_) => CLASSES[4],
                D::OutOfRange(_) => CLASSES[5],
                D::Aborted(_) => CLASSES[6],
                D::Unavailable(_) => CLASSES[7],
                D::PermissionDenied(_) => CLASSES[8],
                D::Unimplemented(_) => CLASSES[9],
                D::Internal(_) => CLASSES[10],
            },
            CallError::InvalidRequest(_) => CLASSES[11],
            CallError::Deadline(_) => CLASSES[12],
            CallError::Memory(_) => CLASSES[13],
            CallError::BadAnswer(_) => CLASSES[14],
            CallError::UnexpectedAnswer(_) => CLASSES[15],
            CallError::Trapped(_) => CLASSES[16],
            CallError::Busy(_) => CLASSES[17],
            CallError::UnknownDriver(_) => CLASSES[18],
        }
    }

    /// What went wrong, without the class: a driver's own message as it
    /// wrote it, or the host's description.
    pub fn message(&self) -> String {
        use DriverError as D;
        match self {
            CallError::Driver(
                D::InvalidArgument(m)
                | D::NotFound(m)
                | D::AlreadyExists(m)
                | D::FailedPrecondition(m)
                | D::ResourceExhausted(m)
                | D::OutOfRange(m)
                | D::Aborted(m)
                | D::Unavailable(m)
                | D::PermissionDenied(m)
                | D::Unimplemented(m)
                | D::Internal(m),
            ) => m.clone(),
            other => other.to_string(),
        }
    }

    /// The CLI's exit status for this error: 10 and up, one per class.
    pub fn exit_code(&self) -> i32 {
        let at = CLASSES.iter().position(|c| *c == self.class());
        10 + at.expect("every class is listed") as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_class_has_a_name_and_an_exit_status_of_its_own() {
        let e = CallError::Driver(DriverError::NotFound("no volume x".into()));
        assert_eq!(
            (e.class(), e.message(), e.exit_code()),
            ("not-found", "no volume x".into(), 11)
        );
        let t = CallError::Trapped("unreachable".into());
        assert_eq!((t.class(), t.exit_code()), ("trapped", 26));
        let mut names = CLASSES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            CLASSES.len(),
            "a class named twice would share its status"
        );
    }
    use serde_json::json;

    #[test]
    fn every_operation_round_trips_by_name_and_keeps_its_secrets_only_when_asked() {
        assert_eq!(OPERATION_NAMES.len(), 25);
        for name in OPERATION_NAMES {
            match Operation::from_json(name, json!({"not": "a request"})) {
                // Only the calls without a request take anything.
                Ok(op) => {
                    assert!(
                        matches!(op, Operation::Info | Operation::NodeGetInfo),
                        "{name}"
                    );
                    assert_eq!(op.name(), *name);
                    assert_eq!(serde_json::to_value(&op).unwrap()["operation"], *name);
                }
                // Every other name reaches its own request type.
                Err(e) => assert!(
                    e.starts_with(&format!("request for `{name}`")),
                    "{name}: {e}"
                ),
            }
        }
        // Node calls from the CLI are held to the front ends' path rules.
        let odd = Operation::from_json(
            "node-unpublish",
            json!({"target_path": "/a/../etc", "volume_id": "v"}),
        )
        .unwrap_err();
        assert!(odd.contains("must not contain `..`"), "{odd}");
        assert!(Operation::from_json("mount-everything", json!({}))
            .unwrap_err()
            .contains("one of: info, create-volume"));
        let mut op = Operation::from_json(
            "node-publish",
            json!({"target_path": "/t", "volume_id": "v", "publish_context": [],
                   "volume_capability": {"access_type": "Block", "access_mode": "SingleNodeWriter"},
                   "readonly": false, "secrets": [["k", "s3cret"]], "volume_context": []}),
        )
        .unwrap();
        assert_eq!(op.name(), "node-publish");
        assert!(serde_json::to_string(&op).unwrap().contains("s3cret"));
        op.strip_secrets();
        assert!(!serde_json::to_string(&op).unwrap().contains("s3cret"));
        let mut group = Operation::from_json(
            "create-group-snapshot",
            json!({"name": "g", "source_volume_ids": ["a"], "parameters": [],
                   "secrets": [["k", "s3cret"]]}),
        )
        .unwrap();
        group.strip_secrets();
        assert!(!serde_json::to_string(&group).unwrap().contains("s3cret"));
    }
}
