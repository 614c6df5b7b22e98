//! CSI Node: stage, publish and their reverses, stats, expansion, node info.
//!
//! The host creates (and after unpublish removes) the target path as the
//! spec asks of a plugin, keeps durable records of what is staged and
//! published where, and answers repeats and conflicts from them.

use std::path::{Path, PathBuf};

use tonic::{Code, Request, Response, Status};

use super::convert::{self, required, required_path};
use super::proto::node_server::Node;
use super::proto::node_service_capability::{self, rpc};
use super::proto::*;
use super::target::{create_target, exists, io_status, remove_target};
use super::{status, CsiDriver};
use crate::bindings::node as wit;
use crate::bindings::types::Feature;
use crate::call::{Operation, Outcome, WithPaths};
use crate::placement::{repeat_of, Placement, Repeat};

impl CsiDriver {
    /// The `volume_path` of a call about a volume already placed (stats,
    /// expand). CSI's answer for a volume that is not at the path is
    /// NOT_FOUND, so a path no volume could be at (relative, `..`), one
    /// that does not exist, or one the host's records place another volume
    /// at is NOT_FOUND, decided before anything touches the path. A mount
    /// point the records do not know (a publish record lost in a crash) is
    /// left to the driver.
    fn volume_at(&self, volume_id: &str, raw: &str) -> Result<PathBuf, Status> {
        let raw = required(raw, "volume_path")?;
        let path = crate::host_path::RequestPath::parse(raw)
            .map_err(|why| {
                Status::not_found(format!("volume {volume_id} is not at `{raw}`: it {why}"))
            })?
            .as_path()
            .to_owned();
        if !exists(&path) {
            return Err(Status::not_found(format!(
                "{} does not exist",
                path.display()
            )));
        }
        let key = path_key(&path);
        let published = self.records.published(&key)?;
        let staged_here = self
            .records
            .staged(volume_id)?
            .is_some_and(|(at, _)| at == key);
        let known = match &published {
            Some(p) => p.volume_id == volume_id,
            None => staged_here,
        };
        let unrecorded_mount = published.is_none()
            && !staged_here
            && crate::sys::mount::is_mount_point(&path).unwrap_or(false);
        if known || unrecorded_mount {
            Ok(path)
        } else {
            Err(Status::not_found(format!(
                "volume {volume_id} is not published or staged at {}",
                path.display()
            )))
        }
    }
}

fn path_key(p: &Path) -> String {
    p.display().to_string()
}

impl CsiDriver {
    fn stages(&self) -> bool {
        self.has(Feature::StageUnstageVolume)
    }
}

#[tonic::async_trait]
impl Node for CsiDriver {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        self.require(Feature::StageUnstageVolume, "NodeStageVolume")?;
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let staging = required_path(&r.staging_target_path, "staging_target_path")?;
        let cap = convert::required_capability(r.volume_capability, "volume_capability")?;
        let _held = self.in_flight.try_claim(volume_id.clone())?;
        let placement = Placement::new(&volume_id, &cap, false);
        if let Some((at, p)) = self.records.staged(&volume_id)? {
            // A volume stages at one path only.
            if at != path_key(&staging) {
                return Err(Status::already_exists(format!(
                    "volume {volume_id} is staged at {at} with other arguments"
                )));
            }
            match repeat_of(Some(&p), &placement, &staging) {
                Repeat::AlreadyDone => return Ok(Response::new(NodeStageVolumeResponse {})),
                Repeat::Conflict(m) => return Err(Status::already_exists(m)),
                Repeat::Proceed => {}
            }
        }
        std::fs::create_dir_all(&staging).map_err(|e| io_status("creating", &staging, e))?;
        self.call(Operation::NodeStage(WithPaths {
            target_path: staging.clone(),
            staging_path: None,
            request: wit::StageRequest {
                volume_id: volume_id.clone(),
                publish_context: convert::key_values(r.publish_context),
                volume_capability: cap,
                secrets: convert::key_values(r.secrets),
                volume_context: convert::key_values(r.volume_context),
            },
        }))
        .await?;
        self.records
            .set_staged(&volume_id, Some((&path_key(&staging), &placement)))?;
        Ok(Response::new(NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        self.require(Feature::StageUnstageVolume, "NodeUnstageVolume")?;
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let staging = required_path(&r.staging_target_path, "staging_target_path")?;
        let _held = self.in_flight.try_claim(volume_id.clone())?;
        if exists(&staging) {
            self.call(Operation::NodeUnstage(WithPaths {
                target_path: staging.clone(),
                staging_path: None,
                request: wit::UnstageRequest {
                    volume_id: volume_id.clone(),
                },
            }))
            .await?;
        }
        self.records.set_staged(&volume_id, None)?;
        Ok(Response::new(NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let target = required_path(&r.target_path, "target_path")?;
        let cap = convert::required_capability(r.volume_capability, "volume_capability")?;
        let staging: Option<PathBuf> = if self.stages() {
            // CSI: a staging driver's publish without the staging path is
            // FAILED_PRECONDITION (stage first), a malformed one INVALID_ARGUMENT.
            if r.staging_target_path.is_empty() {
                return Err(Status::failed_precondition(
                    "staging_target_path is not set: this driver stages volumes (NodeStageVolume first)",
                ));
            }
            let staging = required_path(&r.staging_target_path, "staging_target_path")?;
            match self.records.staged(&volume_id)? {
                Some((at, _)) if at == path_key(&staging) => {}
                _ => {
                    self.exists(&volume_id).await?;
                    return Err(Status::failed_precondition(format!(
                        "volume {volume_id} is not staged at {}",
                        staging.display()
                    )));
                }
            }
            Some(staging)
        } else {
            None
        };
        let _held = self.in_flight.try_claim(volume_id.clone())?;
        let placement = Placement::new(&volume_id, &cap, r.readonly);
        let key = path_key(&target);
        if cap.access_mode == crate::bindings::types::AccessMode::SingleNodeSingleWriter {
            // One target only (CSI: FAILED_PRECONDITION for a second one).
            if let Some(other) = self.records.published_elsewhere(&volume_id, &key)? {
                return Err(Status::failed_precondition(format!(
                    "volume {volume_id} is single-node-single-writer and already published at {other}"
                )));
            }
        }
        match repeat_of(self.records.published(&key)?.as_ref(), &placement, &target) {
            Repeat::AlreadyDone => return Ok(Response::new(NodePublishVolumeResponse {})),
            Repeat::Conflict(m) => return Err(Status::already_exists(m)),
            Repeat::Proceed => {}
        }
        let created = create_target(&target, &cap)?;
        let result = self
            .call(Operation::NodePublish(WithPaths {
                target_path: target.clone(),
                staging_path: staging,
                request: wit::PublishRequest {
                    volume_id,
                    publish_context: convert::key_values(r.publish_context),
                    volume_capability: cap,
                    readonly: r.readonly,
                    secrets: convert::key_values(r.secrets),
                    volume_context: convert::key_values(r.volume_context),
                },
            }))
            .await;
        if let Err(e) = result {
            // Leave nothing half-done: a target we made for a failed publish goes.
            if created {
                let _ = remove_target(&target);
            }
            return Err(e);
        }
        if created {
            self.records.set_target_made(&key, true)?;
        }
        self.records.set_published(&key, Some(&placement))?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let target = required_path(&r.target_path, "target_path")?;
        let _held = self.in_flight.try_claim(volume_id.clone())?;
        let key = path_key(&target);
        if exists(&target) {
            self.call(Operation::NodeUnpublish(WithPaths {
                target_path: target.clone(),
                staging_path: None,
                request: wit::UnpublishRequest { volume_id },
            }))
            .await?;
            // The spec has the plugin remove the target it made, and nothing else.
            if self.records.target_made(&key)? {
                remove_target(&target)?;
            }
        }
        self.records.set_target_made(&key, false)?;
        self.records.set_published(&key, None)?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        self.require(Feature::VolumeStats, "NodeGetVolumeStats")?;
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let path = self.volume_at(&volume_id, &r.volume_path)?;
        let stats = self
            .call(Operation::NodeGetVolumeStats(WithPaths {
                target_path: path,
                staging_path: None,
                request: wit::VolumeStatsRequest { volume_id },
            }))
            .await?
            .into_volume_stats()
            .map_err(status::from_call)?;
        Ok(Response::new(NodeGetVolumeStatsResponse {
            usage: stats
                .usage
                .into_iter()
                .map(|u| VolumeUsage {
                    available: convert::bytes_out(u.available),
                    total: convert::bytes_out(u.total),
                    used: convert::bytes_out(u.used),
                    unit: match u.unit {
                        wit::UsageUnit::Bytes => volume_usage::Unit::Bytes,
                        wit::UsageUnit::Inodes => volume_usage::Unit::Inodes,
                    } as i32,
                })
                .collect(),
            volume_condition: self.condition(stats.abnormal_message),
        }))
    }

    async fn node_expand_volume(
        &self,
        request: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        self.require(Feature::ExpandVolume, "NodeExpandVolume")?;
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let path = self.volume_at(&volume_id, &r.volume_path)?;
        let volume_capability = match r.volume_capability {
            Some(c) => Some(convert::capability(c, "volume_capability")?),
            // Optional in the request: the one the volume was published or
            // staged with, so a driver knows a raw block volume (nothing to
            // grow at the node) from a filesystem.
            None => self
                .records
                .published(&path_key(&path))?
                .or(self.records.staged(&volume_id)?.map(|(_, p)| p))
                .and_then(|p| p.capability()),
        };
        let capacity_range = convert::capacity_range(r.capacity_range)?;
        let secrets = convert::key_values(r.secrets);
        let _held = self.in_flight.try_claim(volume_id.clone())?;
        if let (true, Some(range)) = (self.expands_at_node(), &capacity_range) {
            // The controller half first, here on the volume's node (see
            // `CsiDriver::expands_at_node`); idempotent, so a retry after a
            // node half that failed grows nothing twice.
            let e = self
                .call(Operation::ControllerExpand(
                    crate::bindings::controller::ControllerExpandRequest {
                        volume_id: volume_id.clone(),
                        capacity_range: Some(*range),
                        secrets: secrets.clone(),
                        volume_capability: volume_capability.clone(),
                    },
                ))
                .await?
                .into_expanded()
                .map_err(status::from_call)?;
            if !e.node_expansion_required {
                return Ok(Response::new(NodeExpandVolumeResponse {
                    capacity_bytes: convert::bytes_out(e.capacity_bytes),
                }));
            }
        }
        let request = wit::NodeExpandRequest {
            volume_id,
            capacity_range,
            volume_capability,
            secrets,
        };
        let bytes = self
            .call(Operation::NodeExpand(WithPaths {
                target_path: path,
                staging_path: None,
                request,
            }))
            .await?
            .into_capacity_bytes()
            .map_err(status::from_call)?;
        Ok(Response::new(NodeExpandVolumeResponse {
            capacity_bytes: convert::bytes_out(bytes),
        }))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let map: &[(Feature, &[rpc::Type])] = &[
            (
                Feature::StageUnstageVolume,
                &[rpc::Type::StageUnstageVolume],
            ),
            (Feature::VolumeStats, &[rpc::Type::GetVolumeStats]),
            (Feature::VolumeCondition, &[rpc::Type::VolumeCondition]),
            (Feature::ExpandVolume, &[rpc::Type::ExpandVolume]),
            (
                Feature::SingleNodeMultiWriter,
                &[rpc::Type::SingleNodeMultiWriter],
            ),
            (Feature::FsGroup, &[rpc::Type::VolumeMountGroup]),
        ];
        let capabilities = map
            .iter()
            .filter(|(f, _)| self.has(*f))
            .flat_map(|(_, types)| types.iter())
            .map(|t| NodeServiceCapability {
                r#type: Some(node_service_capability::Type::Rpc(
                    node_service_capability::Rpc { r#type: *t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        let info = match self.call(Operation::NodeGetInfo).await {
            Ok(Outcome::NodeInfo(i)) => Some(i),
            Ok(other) => {
                return Err(Status::internal(format!(
                    "unexpected driver answer: {other:?}"
                )))
            }
            Err(s) if s.code() == Code::Unimplemented => None,
            Err(s) => return Err(s),
        };
        let node_id = info
            .as_ref()
            .map(|i| i.node_id.clone())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| self.node_id.clone());
        Ok(Response::new(NodeGetInfoResponse {
            node_id,
            max_volumes_per_node: info
                .as_ref()
                .map_or(0, |i| convert::bytes_out(i.max_volumes_per_node)),
            accessible_topology: match &self.topology {
                Some(here) => Some(here.segment()),
                None => info
                    .and_then(|i| i.accessible_topology)
                    .map(convert::topology_out),
            },
        }))
    }
}
