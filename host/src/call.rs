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
    Info,
    CreateVolume(controller::CreateVolumeRequest),
    DeleteVolume(controller::DeleteVolumeRequest),
    ControllerPublish(controller::ControllerPublishRequest),
    ControllerUnpublish(controller::ControllerUnpublishRequest),
    ValidateVolumeCapabilities(controller::ValidateRequest),
    ListVolumes(controller::ListVolumesRequest),
    GetCapacity(controller::GetCapacityRequest),
    CreateSnapshot(controller::CreateSnapshotRequest),
    DeleteSnapshot(controller::DeleteSnapshotRequest),
    ListSnapshots(controller::ListSnapshotsRequest),
    ControllerExpand(controller::ControllerExpandRequest),
    NodeStage(WithPaths<node::StageRequest>),
    NodeUnstage(WithPaths<node::UnstageRequest>),
    NodePublish(WithPaths<node::PublishRequest>),
    NodeUnpublish(WithPaths<node::UnpublishRequest>),
    NodeGetVolumeStats(WithPaths<node::VolumeStatsRequest>),
    NodeExpand(WithPaths<node::NodeExpandRequest>),
    NodeGetInfo,
}

/// A node request plus the host paths kubelet passed with it.
///
/// `target_path` is the publish target (stage/unstage: the staging path;
/// stats/expand: the volume path); `staging_path` is set for publish when
/// the driver stages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WithPaths<R> {
    pub target_path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_path: Option<PathBuf>,
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
    Info(types::DriverInfo),
    Volume(types::Volume),
    Done,
    PublishContext(types::KeyValues),
    Validated(controller::ValidateResponse),
    Volumes(controller::ListVolumesResponse),
    Capacity(controller::GetCapacityResponse),
    Snapshot(types::Snapshot),
    Snapshots(controller::ListSnapshotsResponse),
    Expanded(controller::ControllerExpandResponse),
    VolumeStats(node::VolumeStats),
    CapacityBytes(u64),
    NodeInfo(node::NodeInfo),
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
