//! The calls a front end can make into a driver, their answers, and how a
//! call can fail.
//!
//! Requests are the WIT world's own types; node calls carry host paths
//! beside them, which the host turns into target handles for that call only.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bindings::{controller, node, types, DriverError};

/// One call into a driver.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "operation", content = "request", rename_all = "kebab-case")]
pub enum Operation {
    /// identity.info: name, version, features.
    Info,
    /// controller.create-volume.
    CreateVolume(controller::CreateVolumeRequest),
    /// controller.delete-volume.
    DeleteVolume(controller::DeleteVolumeRequest),
    /// controller.controller-publish (attach).
    ControllerPublish(controller::ControllerPublishRequest),
    /// controller.controller-unpublish (detach).
    ControllerUnpublish(controller::ControllerUnpublishRequest),
    /// controller.validate-volume-capabilities.
    ValidateVolumeCapabilities(controller::ValidateRequest),
    /// controller.list-volumes.
    ListVolumes(controller::ListVolumesRequest),
    /// controller.get-capacity.
    GetCapacity(controller::GetCapacityRequest),
    /// controller.create-snapshot.
    CreateSnapshot(controller::CreateSnapshotRequest),
    /// controller.delete-snapshot.
    DeleteSnapshot(controller::DeleteSnapshotRequest),
    /// controller.list-snapshots.
    ListSnapshots(controller::ListSnapshotsRequest),
    /// controller.expand-volume.
    ControllerExpand(controller::ControllerExpandRequest),
    /// node.stage, at the staging path.
    NodeStage(WithPaths<node::StageRequest>),
    /// node.unstage, at the staging path.
    NodeUnstage(WithPaths<node::UnstageRequest>),
    /// node.publish, at the target (and staging) path.
    NodePublish(WithPaths<node::PublishRequest>),
    /// node.unpublish, at the target path.
    NodeUnpublish(WithPaths<node::UnpublishRequest>),
    /// node.get-volume-stats, at the volume path.
    NodeGetVolumeStats(WithPaths<node::VolumeStatsRequest>),
    /// node.expand-volume, at the volume path.
    NodeExpand(WithPaths<node::NodeExpandRequest>),
    /// node.get-info.
    NodeGetInfo,
}

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

/// Operation names as the CLI and audit log spell them.
pub const OPERATION_NAMES: &[&str] = &[
    "info",
    "create-volume",
    "delete-volume",
    "controller-publish",
    "controller-unpublish",
    "validate-volume-capabilities",
    "list-volumes",
    "get-capacity",
    "create-snapshot",
    "delete-snapshot",
    "list-snapshots",
    "controller-expand",
    "node-stage",
    "node-unstage",
    "node-publish",
    "node-unpublish",
    "node-get-volume-stats",
    "node-expand",
    "node-get-info",
];

impl Operation {
    /// Builds an operation from its name and a JSON request (the CLI's edge).
    pub fn from_json(name: &str, request: Value) -> Result<Self, String> {
        fn req<T: serde::de::DeserializeOwned>(name: &str, v: Value) -> Result<T, String> {
            serde_json::from_value(v).map_err(|e| format!("request for `{name}`: {e}"))
        }
        Ok(match name {
            "info" => Operation::Info,
            "create-volume" => Operation::CreateVolume(req(name, request)?),
            "delete-volume" => Operation::DeleteVolume(req(name, request)?),
            "controller-publish" => Operation::ControllerPublish(req(name, request)?),
            "controller-unpublish" => Operation::ControllerUnpublish(req(name, request)?),
            "validate-volume-capabilities" => {
                Operation::ValidateVolumeCapabilities(req(name, request)?)
            }
            "list-volumes" => Operation::ListVolumes(req(name, request)?),
            "get-capacity" => Operation::GetCapacity(req(name, request)?),
            "create-snapshot" => Operation::CreateSnapshot(req(name, request)?),
            "delete-snapshot" => Operation::DeleteSnapshot(req(name, request)?),
            "list-snapshots" => Operation::ListSnapshots(req(name, request)?),
            "controller-expand" => Operation::ControllerExpand(req(name, request)?),
            "node-stage" => Operation::NodeStage(req(name, request)?),
            "node-unstage" => Operation::NodeUnstage(req(name, request)?),
            "node-publish" => Operation::NodePublish(req(name, request)?),
            "node-unpublish" => Operation::NodeUnpublish(req(name, request)?),
            "node-get-volume-stats" => Operation::NodeGetVolumeStats(req(name, request)?),
            "node-expand" => Operation::NodeExpand(req(name, request)?),
            "node-get-info" => Operation::NodeGetInfo,
            other => {
                return Err(format!(
                    "unknown operation `{other}` (one of: {})",
                    OPERATION_NAMES.join(", ")
                ))
            }
        })
    }

    /// The operation's name (as in [`OPERATION_NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Info => "info",
            Operation::CreateVolume(_) => "create-volume",
            Operation::DeleteVolume(_) => "delete-volume",
            Operation::ControllerPublish(_) => "controller-publish",
            Operation::ControllerUnpublish(_) => "controller-unpublish",
            Operation::ValidateVolumeCapabilities(_) => "validate-volume-capabilities",
            Operation::ListVolumes(_) => "list-volumes",
            Operation::GetCapacity(_) => "get-capacity",
            Operation::CreateSnapshot(_) => "create-snapshot",
            Operation::DeleteSnapshot(_) => "delete-snapshot",
            Operation::ListSnapshots(_) => "list-snapshots",
            Operation::ControllerExpand(_) => "controller-expand",
            Operation::NodeStage(_) => "node-stage",
            Operation::NodeUnstage(_) => "node-unstage",
            Operation::NodePublish(_) => "node-publish",
            Operation::NodeUnpublish(_) => "node-unpublish",
            Operation::NodeGetVolumeStats(_) => "node-get-volume-stats",
            Operation::NodeExpand(_) => "node-expand",
            Operation::NodeGetInfo => "node-get-info",
        }
    }

    /// Empties every secrets field (for drivers without the secrets grant).
    pub fn strip_secrets(&mut self) {
        let s: Option<&mut Vec<(String, String)>> = match self {
            Operation::CreateVolume(r) => Some(&mut r.secrets),
            Operation::DeleteVolume(r) => Some(&mut r.secrets),
            Operation::ControllerPublish(r) => Some(&mut r.secrets),
            Operation::ControllerUnpublish(r) => Some(&mut r.secrets),
            Operation::ValidateVolumeCapabilities(r) => Some(&mut r.secrets),
            Operation::CreateSnapshot(r) => Some(&mut r.secrets),
            Operation::DeleteSnapshot(r) => Some(&mut r.secrets),
            Operation::ListSnapshots(r) => Some(&mut r.secrets),
            Operation::ControllerExpand(r) => Some(&mut r.secrets),
            Operation::NodeStage(r) => Some(&mut r.request.secrets),
            Operation::NodePublish(r) => Some(&mut r.request.secrets),
            Operation::NodeExpand(r) => Some(&mut r.request.secrets),
            _ => None,
        };
        if let Some(s) = s {
            s.clear();
        }
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
    };
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
    /// Checks every id in a driver's answer (see [`check_id`]); the error
    /// says which one is wrong and how.
    pub fn check_ids(&self) -> Result<(), String> {
        let volume = |v: &types::Volume| check_id("volume id", &v.volume_id);
        let snapshot = |s: &types::Snapshot| {
            check_id("snapshot id", &s.snapshot_id)?;
            check_id("source volume id", &s.source_volume_id)
        };
        match self {
            Outcome::Volume(v) => volume(v),
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
