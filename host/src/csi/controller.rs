//! CSI Controller: provisioning, attachment, snapshots, expansion.

use tonic::{Request, Response, Status};

use super::convert::{self, required};
use super::proto::controller_server::Controller;
use super::proto::controller_service_capability::{self, rpc};
use super::proto::*;
use super::{status, CsiDriver};
use crate::bindings::controller as wit;
use crate::bindings::types::Feature;
use crate::call::Operation;

#[tonic::async_trait]
impl Controller for CsiDriver {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        self.require(Feature::CreateDeleteVolume, "CreateVolume")?;
        let r = request.into_inner();
        let name = required(&r.name, "name")?.to_owned();
        let content_source = convert::content_source(r.volume_content_source)?;
        match &content_source {
            Some(crate::bindings::types::ContentSource::Snapshot(_)) => {
                self.require(Feature::Snapshots, "CreateVolume from a snapshot")?
            }
            Some(crate::bindings::types::ContentSource::Volume(_)) => {
                self.require(Feature::CloneVolume, "CreateVolume from a volume")?
            }
            None => {}
        }
        if let Some(here) = &self.topology {
            here.admit(r.accessibility_requirements.as_ref())?;
        }
        let req = wit::CreateVolumeRequest {
            capacity_range: convert::capacity_range(r.capacity_range)?,
            volume_capabilities: convert::capabilities(
                r.volume_capabilities,
                "volume_capabilities",
            )?,
            parameters: convert::key_values(r.parameters),
            secrets: convert::key_values(r.secrets),
            content_source,
            accessibility_requirements: convert::topology_requirement(r.accessibility_requirements),
            mutable_parameters: convert::key_values(r.mutable_parameters),
            name: name.clone(),
        };
        let _held = self.in_flight.try_claim(format!("name/{name}"))?;
        let v = self
            .call(Operation::CreateVolume(req))
            .await?
            .into_volume()
            .map_err(status::from_call)?;
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(self.volume_out(v)),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        self.require(Feature::CreateDeleteVolume, "DeleteVolume")?;
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let _held = self.in_flight.try_claim(volume_id.clone())?;
        match self
            .call(Operation::DeleteVolume(wit::DeleteVolumeRequest {
                volume_id,
                secrets: convert::key_values(r.secrets),
            }))
            .await
        {
            // Deleting what is not there is success (idempotent).
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(s),
        }
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        request: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        self.require(Feature::PublishUnpublishVolume, "ControllerPublishVolume")?;
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let node_id = required(&r.node_id, "node_id")?.to_owned();
        let volume_capability =
            convert::required_capability(r.volume_capability, "volume_capability")?;
        if self.topology.is_some() && node_id != self.node_id {
            // A node-local volume is reachable from its own node only.
            return Err(Status::not_found(format!(
                "node `{node_id}`: this driver's volumes live on node `{}`",
                self.node_id
            )));
        }
        let _held = self.in_flight.try_claim(volume_id.clone())?;
        // Published to this node before with other arguments (read-only
        // after read-write, another capability): ALREADY_EXISTS (CSI).
        let asked = crate::placement::Placement::new(&volume_id, &volume_capability, r.readonly);
        if let Some(was) = self.records.attached(&volume_id, &node_id)? {
            if was != asked {
                return Err(Status::already_exists(format!(
                    "volume {volume_id} is published to node `{node_id}` with other arguments"
                )));
            }
        }
        let ctx = self
            .call(Operation::ControllerPublish(
                wit::ControllerPublishRequest {
                    volume_id: volume_id.clone(),
                    node_id: node_id.clone(),
                    volume_capability,
                    readonly: r.readonly,
                    secrets: convert::key_values(r.secrets),
                    volume_context: convert::key_values(r.volume_context),
                },
            ))
            .await?
            .into_publish_context()
            .map_err(status::from_call)?;
        self.records
            .set_attached(&volume_id, &node_id, Some(&asked))?;
        Ok(Response::new(ControllerPublishVolumeResponse {
            publish_context: convert::map(ctx),
        }))
    }

    async fn controller_unpublish_volume(
        &self,
        request: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        self.require(Feature::PublishUnpublishVolume, "ControllerUnpublishVolume")?;
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let _held = self.in_flight.try_claim(volume_id.clone())?;
        // No node named: unpublished from every node; this host knows its own.
        let node_id = if r.node_id.is_empty() {
            self.node_id.clone()
        } else {
            r.node_id.clone()
        };
        match self
            .call(Operation::ControllerUnpublish(
                wit::ControllerUnpublishRequest {
                    volume_id: volume_id.clone(),
                    node_id: r.node_id,
                    secrets: convert::key_values(r.secrets),
                },
            ))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(s),
        }
        self.records.set_attached(&volume_id, &node_id, None)?;
        Ok(Response::new(ControllerUnpublishVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let req = wit::ValidateRequest {
            volume_id,
            volume_capabilities: convert::capabilities(
                r.volume_capabilities,
                "volume_capabilities",
            )?,
            volume_context: convert::key_values(r.volume_context.clone()),
            parameters: convert::key_values(r.parameters.clone()),
            mutable_parameters: convert::key_values(r.mutable_parameters.clone()),
            secrets: convert::key_values(r.secrets),
        };
        let v = self
            .call(Operation::ValidateVolumeCapabilities(req))
            .await?
            .into_validated()
            .map_err(status::from_call)?;
        Ok(Response::new(ValidateVolumeCapabilitiesResponse {
            confirmed: v
                .confirmed
                .map(|caps| validate_volume_capabilities_response::Confirmed {
                    volume_context: r.volume_context,
                    volume_capabilities: caps.into_iter().map(convert::capability_out).collect(),
                    parameters: r.parameters,
                    mutable_parameters: r.mutable_parameters,
                }),
            message: v.message,
        }))
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        self.require(Feature::ListVolumes, "ListVolumes")?;
        let r = request.into_inner();
        let list = self
            .call(Operation::ListVolumes(wit::ListVolumesRequest {
                max_entries: convert::max_entries(r.max_entries)?,
                starting_token: r.starting_token,
            }))
            .await?
            .into_volumes()
            .map_err(status::from_call)?;
        Ok(Response::new(ListVolumesResponse {
            entries: list
                .entries
                .into_iter()
                .map(|e| list_volumes_response::Entry {
                    volume: Some(self.volume_out(e.volume)),
                    status: Some(list_volumes_response::VolumeStatus {
                        volume_condition: self.condition(e.abnormal_message),
                        published_node_ids: e.published_node_ids,
                    }),
                })
                .collect(),
            next_token: list.next_token,
        }))
    }

    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        self.require(Feature::GetCapacity, "GetCapacity")?;
        let r = request.into_inner();
        let caps = r
            .volume_capabilities
            .into_iter()
            .enumerate()
            .map(|(i, c)| convert::capability(c, &format!("volume_capabilities[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(here) = &self.topology {
            if !here.serves(r.accessible_topology.as_ref())? {
                // Another node's capacity is that node's host to report.
                return Ok(Response::new(GetCapacityResponse::default()));
            }
        }
        let c = self
            .call(Operation::GetCapacity(wit::GetCapacityRequest {
                volume_capabilities: caps,
                parameters: convert::key_values(r.parameters),
                accessible_topology: r.accessible_topology.map(convert::topology),
            }))
            .await?
            .into_capacity()
            .map_err(status::from_call)?;
        Ok(Response::new(GetCapacityResponse {
            available_capacity: convert::bytes_out(c.available_capacity),
            maximum_volume_size: c.maximum_volume_size.map(convert::bytes_out),
            minimum_volume_size: c.minimum_volume_size.map(convert::bytes_out),
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        let map: &[(Feature, &[rpc::Type])] = &[
            (
                Feature::CreateDeleteVolume,
                &[rpc::Type::CreateDeleteVolume],
            ),
            (
                Feature::PublishUnpublishVolume,
                &[
                    rpc::Type::PublishUnpublishVolume,
                    rpc::Type::PublishReadonly,
                ],
            ),
            (Feature::ListVolumes, &[rpc::Type::ListVolumes]),
            (Feature::GetCapacity, &[rpc::Type::GetCapacity]),
            (Feature::Snapshots, &[rpc::Type::CreateDeleteSnapshot]),
            (Feature::ListSnapshots, &[rpc::Type::ListSnapshots]),
            (Feature::CloneVolume, &[rpc::Type::CloneVolume]),
            (Feature::ExpandVolume, &[rpc::Type::ExpandVolume]),
            (
                Feature::SingleNodeMultiWriter,
                &[rpc::Type::SingleNodeMultiWriter],
            ),
            (Feature::ModifyVolume, &[rpc::Type::ModifyVolume]),
            (Feature::GetVolume, &[rpc::Type::GetVolume]),
            (Feature::VolumeCondition, &[rpc::Type::VolumeCondition]),
            (Feature::GetSnapshot, &[rpc::Type::GetSnapshot]),
        ];
        let capabilities = map
            .iter()
            .filter(|(f, _)| self.has(*f))
            .flat_map(|(_, types)| types.iter())
            // Grown at the node only: see `CsiDriver::expands_at_node`.
            .filter(|t| !(**t == rpc::Type::ExpandVolume && self.expands_at_node()))
            .map(|t| ControllerServiceCapability {
                r#type: Some(controller_service_capability::Type::Rpc(
                    controller_service_capability::Rpc { r#type: *t as i32 },
                )),
            })
            .collect();
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        self.require(Feature::Snapshots, "CreateSnapshot")?;
        let r = request.into_inner();
        let name = required(&r.name, "name")?.to_owned();
        let source_volume_id = required(&r.source_volume_id, "source_volume_id")?.to_owned();
        let _held = self.in_flight.try_claim(format!("snapshot-name/{name}"))?;
        let s = self
            .call(Operation::CreateSnapshot(wit::CreateSnapshotRequest {
                source_volume_id,
                name,
                secrets: convert::key_values(r.secrets),
                parameters: convert::key_values(r.parameters),
            }))
            .await?
            .into_snapshot()
            .map_err(status::from_call)?;
        Ok(Response::new(CreateSnapshotResponse {
            snapshot: Some(convert::snapshot_out(s)),
        }))
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        self.require(Feature::Snapshots, "DeleteSnapshot")?;
        let r = request.into_inner();
        let snapshot_id = required(&r.snapshot_id, "snapshot_id")?.to_owned();
        let _held = self
            .in_flight
            .try_claim(format!("snapshot/{snapshot_id}"))?;
        match self
            .call(Operation::DeleteSnapshot(wit::DeleteSnapshotRequest {
                snapshot_id,
                secrets: convert::key_values(r.secrets),
            }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(s),
        }
        Ok(Response::new(DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        self.require(Feature::ListSnapshots, "ListSnapshots")?;
        let r = request.into_inner();
        let list = self
            .call(Operation::ListSnapshots(wit::ListSnapshotsRequest {
                max_entries: convert::max_entries(r.max_entries)?,
                starting_token: r.starting_token,
                source_volume_id: r.source_volume_id,
                snapshot_id: r.snapshot_id,
                secrets: convert::key_values(r.secrets),
            }))
            .await?
            .into_snapshots()
            .map_err(status::from_call)?;
        Ok(Response::new(ListSnapshotsResponse {
            entries: list
                .entries
                .into_iter()
                .map(|s| list_snapshots_response::Entry {
                    snapshot: Some(convert::snapshot_out(s)),
                })
                .collect(),
            next_token: list.next_token,
        }))
    }

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        self.require(Feature::GetSnapshot, "GetSnapshot")?;
        let r = request.into_inner();
        let snapshot_id = required(&r.snapshot_id, "snapshot_id")?.to_owned();
        let s = self
            .call(Operation::GetSnapshot(wit::GetSnapshotRequest {
                snapshot_id,
                secrets: convert::key_values(r.secrets),
            }))
            .await?
            .into_snapshot()
            .map_err(status::from_call)?;
        Ok(Response::new(GetSnapshotResponse {
            snapshot: Some(convert::snapshot_out(s)),
        }))
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        self.require(Feature::ExpandVolume, "ControllerExpandVolume")?;
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let capacity_range = convert::capacity_range(r.capacity_range)?
            .ok_or_else(|| Status::invalid_argument("capacity_range is required"))?;
        let volume_capability = r
            .volume_capability
            .map(|c| convert::capability(c, "volume_capability"))
            .transpose()?;
        let _held = self.in_flight.try_claim(volume_id.clone())?;
        let e = self
            .call(Operation::ControllerExpand(wit::ControllerExpandRequest {
                volume_id,
                capacity_range: Some(capacity_range),
                secrets: convert::key_values(r.secrets),
                volume_capability,
            }))
            .await?
            .into_expanded()
            .map_err(status::from_call)?;
        Ok(Response::new(ControllerExpandVolumeResponse {
            capacity_bytes: convert::bytes_out(e.capacity_bytes),
            node_expansion_required: e.node_expansion_required,
        }))
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        self.require(Feature::GetVolume, "ControllerGetVolume")?;
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        let e = self
            .call(Operation::ControllerGetVolume(wit::GetVolumeRequest {
                volume_id,
            }))
            .await?
            .into_listed_volume()
            .map_err(status::from_call)?;
        Ok(Response::new(ControllerGetVolumeResponse {
            status: Some(controller_get_volume_response::VolumeStatus {
                volume_condition: self.condition(e.abnormal_message),
                published_node_ids: e.published_node_ids,
            }),
            volume: Some(self.volume_out(e.volume)),
        }))
    }

    async fn controller_modify_volume(
        &self,
        request: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        self.require(Feature::ModifyVolume, "ControllerModifyVolume")?;
        let r = request.into_inner();
        let volume_id = required(&r.volume_id, "volume_id")?.to_owned();
        if r.mutable_parameters.is_empty() {
            return Err(Status::invalid_argument(
                "mutable_parameters is required: name the parameters to change",
            ));
        }
        let _held = self.in_flight.try_claim(volume_id.clone())?;
        self.call(Operation::ModifyVolume(wit::ModifyVolumeRequest {
            volume_id,
            secrets: convert::key_values(r.secrets),
            mutable_parameters: convert::key_values(r.mutable_parameters),
        }))
        .await?;
        Ok(Response::new(ControllerModifyVolumeResponse {}))
    }
}

impl CsiDriver {
    /// NOT_FOUND when the driver says the volume does not exist (asked
    /// only of a driver with `get-volume`; others cannot tell, and pass).
    /// The spec puts "volume does not exist" before the other failures of
    /// a node call, and only the driver knows its volumes.
    pub(super) async fn exists(&self, volume_id: &str) -> Result<(), Status> {
        if !self.has(Feature::GetVolume) {
            return Ok(());
        }
        match self
            .call(Operation::ControllerGetVolume(wit::GetVolumeRequest {
                volume_id: volume_id.to_owned(),
            }))
            .await
        {
            Err(s) if s.code() == tonic::Code::NotFound => Err(s),
            _ => Ok(()),
        }
    }

    /// A volume's condition as CSI carries it: set exactly when the driver
    /// reports conditions (the spec makes it required then), normal unless
    /// the driver said what is wrong.
    pub(super) fn condition(&self, abnormal: Option<String>) -> Option<VolumeCondition> {
        self.has(Feature::VolumeCondition).then(|| VolumeCondition {
            abnormal: abnormal.is_some(),
            message: abnormal.unwrap_or_else(|| "volume is healthy".into()),
        })
    }

    /// A driver's volume as CSI carries it; a node-local one pinned to this node.
    fn volume_out(&self, v: crate::bindings::types::Volume) -> Volume {
        let mut out = convert::volume_out(v);
        if let Some(here) = &self.topology {
            out.accessible_topology = vec![here.segment()];
        }
        out
    }
}
