//! CSI GroupController: snapshots of several volumes at one point in time.
//!
//! The service is registered on a driver's socket only when the driver has
//! feature `group-snapshots` (see [`super::serve`]), so its RPCs need no
//! feature check of their own.

use tonic::{Request, Response, Status};

use super::convert::{self, required};
use super::proto::group_controller_server::GroupController;
use super::proto::group_controller_service_capability::{self, rpc};
use super::proto::*;
use super::{status, CsiDriver};
use crate::bindings::controller as wit;
use crate::call::Operation;

#[tonic::async_trait]
impl GroupController for CsiDriver {
    async fn group_controller_get_capabilities(
        &self,
        _: Request<GroupControllerGetCapabilitiesRequest>,
    ) -> Result<Response<GroupControllerGetCapabilitiesResponse>, Status> {
        Ok(Response::new(GroupControllerGetCapabilitiesResponse {
            capabilities: vec![GroupControllerServiceCapability {
                r#type: Some(group_controller_service_capability::Type::Rpc(
                    group_controller_service_capability::Rpc {
                        r#type: rpc::Type::CreateDeleteGetVolumeGroupSnapshot as i32,
                    },
                )),
            }],
        }))
    }

    async fn create_volume_group_snapshot(
        &self,
        request: Request<CreateVolumeGroupSnapshotRequest>,
    ) -> Result<Response<CreateVolumeGroupSnapshotResponse>, Status> {
        let r = request.into_inner();
        let name = required(&r.name, "name")?.to_owned();
        if r.source_volume_ids.is_empty() {
            return Err(Status::invalid_argument(
                "source_volume_ids is required: name the volumes to snapshot together",
            ));
        }
        for (i, id) in r.source_volume_ids.iter().enumerate() {
            required(id, &format!("source_volume_ids[{i}]"))?;
        }
        let _held = self.in_flight.try_claim(format!("group-name/{name}"))?;
        let g = self
            .call(Operation::CreateGroupSnapshot(
                wit::CreateGroupSnapshotRequest {
                    name,
                    source_volume_ids: r.source_volume_ids,
                    parameters: convert::key_values(r.parameters),
                    secrets: convert::key_values(r.secrets),
                },
            ))
            .await?
            .into_group_snapshot()
            .map_err(status::from_call)?;
        Ok(Response::new(CreateVolumeGroupSnapshotResponse {
            group_snapshot: Some(convert::group_snapshot_out(g)),
        }))
    }

    async fn delete_volume_group_snapshot(
        &self,
        request: Request<DeleteVolumeGroupSnapshotRequest>,
    ) -> Result<Response<DeleteVolumeGroupSnapshotResponse>, Status> {
        let r = request.into_inner();
        let group_snapshot_id = required(&r.group_snapshot_id, "group_snapshot_id")?.to_owned();
        let _held = self
            .in_flight
            .try_claim(format!("group/{group_snapshot_id}"))?;
        match self
            .call(Operation::DeleteGroupSnapshot(wit::GroupSnapshotRequest {
                group_snapshot_id,
                snapshot_ids: r.snapshot_ids,
                secrets: convert::key_values(r.secrets),
            }))
            .await
        {
            // Deleting what is not there is success (idempotent).
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(s),
        }
        Ok(Response::new(DeleteVolumeGroupSnapshotResponse {}))
    }

    async fn get_volume_group_snapshot(
        &self,
        request: Request<GetVolumeGroupSnapshotRequest>,
    ) -> Result<Response<GetVolumeGroupSnapshotResponse>, Status> {
        let r = request.into_inner();
        let group_snapshot_id = required(&r.group_snapshot_id, "group_snapshot_id")?.to_owned();
        let g = self
            .call(Operation::GetGroupSnapshot(wit::GroupSnapshotRequest {
                group_snapshot_id,
                snapshot_ids: r.snapshot_ids,
                secrets: convert::key_values(r.secrets),
            }))
            .await?
            .into_group_snapshot()
            .map_err(status::from_call)?;
        Ok(Response::new(GetVolumeGroupSnapshotResponse {
            group_snapshot: Some(convert::group_snapshot_out(g)),
        }))
    }
}
