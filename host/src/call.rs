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
