//! Controller rows about volumes: CreateVolume, ValidateVolumeCapabilities,
//! ListVolumes, ControllerGetVolume, ControllerModifyVolume,
//! ControllerPublishVolume and DeleteVolume; the snapshot and node rows run
//! between create and delete, on the volumes made here.

use tonic::Code;

use super::Sweep;
use crate::csi::proto::controller_service_capability::rpc::Type as Rpc;
use crate::csi::proto::*;

/// A volume id no driver has made.
pub(super) const UNKNOWN: &str = "sweep-unknown";

impl Sweep {
    pub(super) async fn volume_rows(&mut self) {
        if !self.offers.controller(Rpc::CreateDeleteVolume) {
            self.skip(
                "CreateVolume",
                "volumes for the rows that need one",
                "no CREATE_DELETE_VOLUME",
            );
            self.node_rows(None).await;
            return;
        }
        let Some((id, other)) = self.create_rows().await else {
            self.skip(
                "(the rest)",
                "rows that need a volume",
                "CreateVolume made none",
            );
            return;
        };
        self.validate_rows(&id).await;
        self.list_rows(&id, &other).await;
        self.get_rows(&id).await;
        self.modify_rows(&id).await;
        self.publish_rows(&id).await;
        self.snapshot_rows(&id, &other).await;
        self.group_rows(&id, &other).await;
        self.node_rows(Some(&id)).await;
        self.delete_rows(&id, &other).await;
    }

    /// Makes the sweep's two volumes, checking CreateVolume's sentences on the way.
    async fn create_rows(&mut self) -> Option<(String, String)> {
        let mut c = self.controller.clone();
        let size = self.profile.size;
        let r = c.create_volume(self.create_req("", size)).await;
        self.expect(
            "CreateVolume",
            "name is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .create_volume(CreateVolumeRequest {
                volume_capabilities: vec![],
                ..self.create_req("sweep-nocaps", size)
            })
            .await;
        self.expect(
            "CreateVolume",
            "volume_capabilities is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let first = c.create_volume(self.create_req("sweep-a", size)).await;
        self.expect("CreateVolume", "creates a volume", Code::Ok, &first);
        let id = first.ok()?.into_inner().volume?.volume_id;
        let again = c.create_volume(self.create_req("sweep-a", size)).await;
        self.expect("CreateVolume", "MUST be idempotent", Code::Ok, &again);
        if let Ok(again) = &again {
            let same = again
                .get_ref()
                .volume
                .as_ref()
                .map(|v| v.volume_id.as_str());
            if same != Some(id.as_str()) {
                self.fail(
                    "CreateVolume",
                    "a repeat answers the same volume",
                    format!("first {id}, then {same:?}"),
                );
            }
        }
        let spec = "same name, incompatible size: ALREADY_EXISTS";
        if self.profile.sizes_volumes {
            let r = c.create_volume(self.create_req("sweep-a", 2 * size)).await;
            self.expect("CreateVolume", spec, Code::AlreadyExists, &r);
        } else {
            self.skip(
                "CreateVolume",
                spec,
                "the profile says volumes are not sized",
            );
        }
        let other = c.create_volume(self.create_req("sweep-b", size)).await;
        self.expect("CreateVolume", "a second volume", Code::Ok, &other);
        let other = other.ok()?.into_inner().volume?.volume_id;
        Some((id, other))
    }

    async fn validate_rows(&mut self, id: &str) {
        let mut c = self.controller.clone();
        let parameters = self.profile.parameters.clone();
        let req = |id: &str, caps: Vec<VolumeCapability>| ValidateVolumeCapabilitiesRequest {
            volume_id: id.into(),
            volume_capabilities: caps,
            parameters: parameters.clone(),
            ..Default::default()
        };
        let rpc = "ValidateVolumeCapabilities";
        let r = c
            .validate_volume_capabilities(req("", vec![self.rw()]))
            .await;
        self.expect(rpc, "volume_id is REQUIRED", Code::InvalidArgument, &r);
        let r = c.validate_volume_capabilities(req(id, vec![])).await;
        self.expect(
            rpc,
            "volume_capabilities is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .validate_volume_capabilities(req(UNKNOWN, vec![self.rw()]))
            .await;
        self.expect(rpc, "volume does not exist", Code::NotFound, &r);
        let r = c
            .validate_volume_capabilities(req(id, vec![self.rw()]))
            .await;
        self.expect(rpc, "a volume made with these capabilities", Code::Ok, &r);
        if let Ok(r) = &r {
            if r.get_ref().confirmed.is_none() {
                self.fail(
                    rpc,
                    "confirms the capabilities the volume was made with",
                    format!("not confirmed: {}", r.get_ref().message),
                );
            }
        }
    }

    async fn list_rows(&mut self, id: &str, other: &str) {
        let rpc = "ListVolumes";
        if !self.offers.controller(Rpc::ListVolumes) {
            self.skip(rpc, "every row", "no LIST_VOLUMES");
            return;
        }
        let mut c = self.controller.clone();
        let negative = c
            .list_volumes(ListVolumesRequest {
                max_entries: -1,
                ..Default::default()
            })
            .await;
        let unknown_token = c
            .list_volumes(ListVolumesRequest {
                starting_token: "no-such-token".into(),
                ..Default::default()
            })
            .await;
        self.paging_rows(rpc, &negative, &unknown_token);
        // Page by one: every volume once, the sweep's two among them.
        let mut seen = Vec::new();
        let mut token = String::new();
        for _ in 0..1000 {
            let page = c
                .list_volumes(ListVolumesRequest {
                    max_entries: 1,
                    starting_token: token.clone(),
                })
                .await;
            match page {
                Ok(p) => {
                    let p = p.into_inner();
                    if p.entries.len() > 1 {
                        self.fail(
                            rpc,
                            "answers at most max_entries",
                            format!("{} entries", p.entries.len()),
                        );
                        return;
                    }
                    seen.extend(
                        p.entries
                            .into_iter()
                            .filter_map(|e| e.volume.map(|v| v.volume_id)),
                    );
                    if p.next_token.is_empty() {
                        break;
                    }
                    token = p.next_token;
                }
                Err(e) => {
                    self.fail(rpc, "pages with next_token", format!("{e}"));
                    return;
                }
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        let spec = "pages of one list every volume once";
        if unique.len() != seen.len()
            || !seen.iter().any(|v| v == id)
            || !seen.iter().any(|v| v == other)
        {
            self.fail(rpc, spec, format!("listed {seen:?}"));
        } else {
            self.report.push(rpc, spec, super::Verdict::Passed);
        }
    }

    async fn get_rows(&mut self, id: &str) {
        let rpc = "ControllerGetVolume";
        if !self.offers.controller(Rpc::GetVolume) {
            self.skip(rpc, "every row", "no GET_VOLUME");
            return;
        }
        let mut c = self.controller.clone();
        let get = |id: &str| ControllerGetVolumeRequest {
            volume_id: id.into(),
        };
        let r = c.controller_get_volume(get("")).await;
        self.expect(rpc, "volume_id is REQUIRED", Code::InvalidArgument, &r);
        let r = c.controller_get_volume(get(UNKNOWN)).await;
        self.expect(rpc, "volume does not exist", Code::NotFound, &r);
        let r = c.controller_get_volume(get(id)).await;
        self.expect(rpc, "an existing volume", Code::Ok, &r);
        let spec = "volume_condition is set with VOLUME_CONDITION";
        if !self.offers.controller(Rpc::VolumeCondition) {
            self.skip(rpc, spec, "no VOLUME_CONDITION");
        } else if let Ok(got) = &r {
            let condition = got
                .get_ref()
                .status
                .as_ref()
                .and_then(|s| s.volume_condition.as_ref());
            self.condition_row(rpc, spec, condition);
        }
    }

    async fn modify_rows(&mut self, id: &str) {
        let rpc = "ControllerModifyVolume";
        if !self.offers.controller(Rpc::ModifyVolume) {
            self.skip(rpc, "every row", "no MODIFY_VOLUME");
            return;
        }
        let mut c = self.controller.clone();
        let modify = |id: &str, p: Vec<(String, String)>| ControllerModifyVolumeRequest {
            volume_id: id.into(),
            mutable_parameters: p.into_iter().collect(),
            ..Default::default()
        };
        let accepted: Vec<(String, String)> = self
            .profile
            .mutable_parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let unknown = vec![("sweep-no-such-key".to_owned(), "1".to_owned())];
        let r = c
            .controller_modify_volume(modify("", unknown.clone()))
            .await;
        self.expect(rpc, "volume_id is REQUIRED", Code::InvalidArgument, &r);
        let r = c.controller_modify_volume(modify(id, vec![])).await;
        self.expect(
            rpc,
            "mutable_parameters is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c.controller_modify_volume(modify(id, unknown)).await;
        self.expect(rpc, "parameters not supported", Code::InvalidArgument, &r);
        let spec = "MUST be idempotent";
        if accepted.is_empty() {
            self.skip(
                rpc,
                "volume does not exist",
                "the profile names no mutable parameter",
            );
            self.skip(rpc, spec, "the profile names no mutable parameter");
            return;
        }
        let r = c
            .controller_modify_volume(modify(UNKNOWN, accepted.clone()))
            .await;
        self.expect(rpc, "volume does not exist", Code::NotFound, &r);
        for _ in 0..2 {
            let r = c
                .controller_modify_volume(modify(id, accepted.clone()))
                .await;
            self.expect(rpc, spec, Code::Ok, &r);
        }
    }

    async fn publish_rows(&mut self, id: &str) {
        let rpc = "ControllerPublishVolume";
        if !self.offers.controller(Rpc::PublishUnpublishVolume) {
            self.skip(rpc, "every row", "no PUBLISH_UNPUBLISH_VOLUME");
            return;
        }
        let node_id = match self.node.clone().node_get_info(NodeGetInfoRequest {}).await {
            Ok(r) => r.into_inner().node_id,
            Err(e) => {
                self.fail(rpc, "the node id NodeGetInfo answers", format!("{e}"));
                return;
            }
        };
        let mut c = self.controller.clone();
        let cap = self.rw();
        let publish = |id: &str, node: &str, cap: Option<VolumeCapability>, readonly: bool| {
            ControllerPublishVolumeRequest {
                volume_id: id.into(),
                node_id: node.into(),
                volume_capability: cap,
                readonly,
                ..Default::default()
            }
        };
        let r = c
            .controller_publish_volume(publish("", &node_id, Some(cap.clone()), false))
            .await;
        self.expect(rpc, "volume_id is REQUIRED", Code::InvalidArgument, &r);
        let r = c
            .controller_publish_volume(publish(id, "", Some(cap.clone()), false))
            .await;
        self.expect(rpc, "node_id is REQUIRED", Code::InvalidArgument, &r);
        let r = c
            .controller_publish_volume(publish(id, &node_id, None, false))
            .await;
        self.expect(
            rpc,
            "volume_capability is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .controller_publish_volume(publish(UNKNOWN, &node_id, Some(cap.clone()), false))
            .await;
        self.expect(rpc, "volume does not exist", Code::NotFound, &r);
        let r = c
            .controller_publish_volume(publish(id, "sweep-no-such-node", Some(cap.clone()), false))
            .await;
        self.expect(rpc, "node does not exist", Code::NotFound, &r);
        for _ in 0..2 {
            let r = c
                .controller_publish_volume(publish(id, &node_id, Some(cap.clone()), false))
                .await;
            self.expect(rpc, "MUST be idempotent", Code::Ok, &r);
        }
        let spec = "published to the node with another readonly: ALREADY_EXISTS";
        if self.offers.controller(Rpc::PublishReadonly) {
            let r = c
                .controller_publish_volume(publish(id, &node_id, Some(cap.clone()), true))
                .await;
            self.expect(rpc, spec, Code::AlreadyExists, &r);
        } else {
            self.skip(rpc, spec, "no PUBLISH_READONLY");
        }
        let unpublish = |id: &str| ControllerUnpublishVolumeRequest {
            volume_id: id.into(),
            node_id: node_id.clone(),
            ..Default::default()
        };
        let rpc = "ControllerUnpublishVolume";
        let r = c.controller_unpublish_volume(unpublish("")).await;
        self.expect(rpc, "volume_id is REQUIRED", Code::InvalidArgument, &r);
        for _ in 0..2 {
            let r = c.controller_unpublish_volume(unpublish(id)).await;
            self.expect(rpc, "MUST be idempotent", Code::Ok, &r);
        }
    }

    async fn delete_rows(&mut self, id: &str, other: &str) {
        let mut c = self.controller.clone();
        let delete = |id: &str| DeleteVolumeRequest {
            volume_id: id.into(),
            ..Default::default()
        };
        let r = c.delete_volume(delete("")).await;
        self.expect(
            "DeleteVolume",
            "volume_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        for v in [id, other, id] {
            let r = c.delete_volume(delete(v)).await;
            self.expect(
                "DeleteVolume",
                "MUST be idempotent (a missing volume is OK)",
                Code::Ok,
                &r,
            );
        }
    }
}
