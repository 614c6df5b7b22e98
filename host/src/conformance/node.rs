//! Node rows: NodeGetInfo, NodeStageVolume, NodePublishVolume,
//! NodeGetVolumeStats, NodeExpandVolume, NodeUnpublishVolume and
//! NodeUnstageVolume, on the sweep's volume (or, for a driver that makes
//! no volumes, the rows that need none).

use tonic::Code;

use super::controller::UNKNOWN;
use super::Sweep;
use crate::csi::proto::node_service_capability::rpc::Type as Rpc;
use crate::csi::proto::volume_capability::access_mode::Mode;
use crate::csi::proto::*;

const PUBLISH: &str = "NodePublishVolume";

fn stage(id: &str, path: &str, cap: Option<VolumeCapability>) -> NodeStageVolumeRequest {
    NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: path.into(),
        volume_capability: cap,
        ..Default::default()
    }
}

fn publish(
    id: &str,
    target: &str,
    staging: &str,
    cap: Option<VolumeCapability>,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: id.into(),
        target_path: target.into(),
        staging_target_path: staging.into(),
        volume_capability: cap,
        ..Default::default()
    }
}

fn unpublish(id: &str, target: &str) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: id.into(),
        target_path: target.into(),
    }
}

fn unstage(id: &str, path: &str) -> NodeUnstageVolumeRequest {
    NodeUnstageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: path.into(),
    }
}

impl Sweep {
    pub(super) async fn node_rows(&mut self, id: Option<&str>) {
        let mut n = self.node.clone();
        let info = n.node_get_info(NodeGetInfoRequest {}).await;
        self.expect("NodeGetInfo", "answers", Code::Ok, &info);
        if matches!(&info, Ok(i) if i.get_ref().node_id.is_empty()) {
            self.fail("NodeGetInfo", "node_id is REQUIRED", "empty".into());
        }
        let stages = self.offers.node(Rpc::StageUnstageVolume);
        let staging = self.path("staging");
        let target = self.path("target");
        let staged = if stages {
            staging.clone()
        } else {
            String::new()
        };
        let rw = self.rw();

        if stages {
            let rpc = "NodeStageVolume";
            let r = n
                .node_stage_volume(stage("", &staging, Some(rw.clone())))
                .await;
            self.expect(rpc, "volume_id is REQUIRED", Code::InvalidArgument, &r);
            let r = n
                .node_stage_volume(stage(id.unwrap_or(UNKNOWN), "", Some(rw.clone())))
                .await;
            self.expect(
                rpc,
                "staging_target_path is REQUIRED",
                Code::InvalidArgument,
                &r,
            );
            let r = n
                .node_stage_volume(stage(id.unwrap_or(UNKNOWN), &staging, None))
                .await;
            self.expect(
                rpc,
                "volume_capability is REQUIRED",
                Code::InvalidArgument,
                &r,
            );
            if id.is_some() {
                let r = n
                    .node_stage_volume(stage(UNKNOWN, &staging, Some(rw.clone())))
                    .await;
                self.expect(rpc, "volume does not exist", Code::NotFound, &r);
            }
        }
        let rpc = PUBLISH;
        let r = n
            .node_publish_volume(publish("", &target, &staged, Some(rw.clone())))
            .await;
        self.expect(rpc, "volume_id is REQUIRED", Code::InvalidArgument, &r);
        let any = id.unwrap_or(UNKNOWN);
        let r = n
            .node_publish_volume(publish(any, "", &staged, Some(rw.clone())))
            .await;
        self.expect(rpc, "target_path is REQUIRED", Code::InvalidArgument, &r);
        let r = n
            .node_publish_volume(publish(any, &target, &staged, None))
            .await;
        self.expect(
            rpc,
            "volume_capability is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let rpc = "NodeUnpublishVolume";
        let r = n.node_unpublish_volume(unpublish("", &target)).await;
        self.expect(rpc, "volume_id is REQUIRED", Code::InvalidArgument, &r);
        let r = n.node_unpublish_volume(unpublish(any, "")).await;
        self.expect(rpc, "target_path is REQUIRED", Code::InvalidArgument, &r);
        if stages {
            let rpc = "NodeUnstageVolume";
            let r = n.node_unstage_volume(unstage("", &staging)).await;
            self.expect(rpc, "volume_id is REQUIRED", Code::InvalidArgument, &r);
            let r = n.node_unstage_volume(unstage(any, "")).await;
            self.expect(
                rpc,
                "staging_target_path is REQUIRED",
                Code::InvalidArgument,
                &r,
            );
        }
        let Some(id) = id else {
            self.skip(PUBLISH, "rows that need a volume", "no volume");
            return;
        };

        if stages {
            for _ in 0..2 {
                let r = n
                    .node_stage_volume(stage(id, &staging, Some(rw.clone())))
                    .await;
                self.expect("NodeStageVolume", "MUST be idempotent", Code::Ok, &r);
            }
            let ro = self.cap(Mode::SingleNodeReaderOnly);
            let r = n.node_stage_volume(stage(id, &staging, Some(ro))).await;
            self.expect(
                "NodeStageVolume",
                "staged with another capability: ALREADY_EXISTS",
                Code::AlreadyExists,
                &r,
            );
            let r = n
                .node_publish_volume(publish(id, &target, "", Some(rw.clone())))
                .await;
            self.expect(
                PUBLISH,
                "staging target path not set",
                Code::FailedPrecondition,
                &r,
            );
        }
        let r = n
            .node_publish_volume(publish(UNKNOWN, &target, &staged, Some(rw.clone())))
            .await;
        self.expect(PUBLISH, "volume does not exist", Code::NotFound, &r);
        for _ in 0..2 {
            let r = n
                .node_publish_volume(publish(id, &target, &staged, Some(rw.clone())))
                .await;
            self.expect(PUBLISH, "MUST be idempotent", Code::Ok, &r);
        }
        let r = n
            .node_publish_volume(NodePublishVolumeRequest {
                readonly: true,
                ..publish(id, &target, &staged, Some(rw.clone()))
            })
            .await;
        self.expect(
            PUBLISH,
            "published at the target with other arguments: ALREADY_EXISTS",
            Code::AlreadyExists,
            &r,
        );

        self.stats_rows(id, &target).await;
        self.node_expand_rows(&target).await;

        for _ in 0..2 {
            let r = n.node_unpublish_volume(unpublish(id, &target)).await;
            self.expect("NodeUnpublishVolume", "MUST be idempotent", Code::Ok, &r);
        }
        self.single_writer_rows(id, &staged).await;
        if stages {
            for _ in 0..2 {
                let r = n.node_unstage_volume(unstage(id, &staging)).await;
                self.expect("NodeUnstageVolume", "MUST be idempotent", Code::Ok, &r);
            }
        }
    }

    async fn stats_rows(&mut self, id: &str, target: &str) {
        let rpc = "NodeGetVolumeStats";
        if !self.offers.node(Rpc::GetVolumeStats) {
            self.skip(rpc, "every row", "no GET_VOLUME_STATS");
            return;
        }
        let mut n = self.node.clone();
        let stats = |id: &str, path: &str| NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path.into(),
            staging_target_path: String::new(),
        };
        let r = n.node_get_volume_stats(stats("", target)).await;
        self.expect(rpc, "volume_id is REQUIRED", Code::InvalidArgument, &r);
        let r = n.node_get_volume_stats(stats(id, "")).await;
        self.expect(rpc, "volume_path is REQUIRED", Code::InvalidArgument, &r);
        let r = n.node_get_volume_stats(stats(UNKNOWN, target)).await;
        self.expect(
            rpc,
            "volume does not exist at volume_path",
            Code::NotFound,
            &r,
        );
        let elsewhere = self.path("elsewhere");
        let r = n.node_get_volume_stats(stats(id, &elsewhere)).await;
        self.expect(rpc, "volume not at volume_path", Code::NotFound, &r);
        let r = n.node_get_volume_stats(stats(id, target)).await;
        self.expect(rpc, "a published volume", Code::Ok, &r);
        let spec = "volume_condition is set with VOLUME_CONDITION";
        if !self.offers.node(Rpc::VolumeCondition) {
            self.skip(rpc, spec, "no VOLUME_CONDITION");
        } else if let Ok(r) = &r {
            self.condition_row(rpc, spec, r.get_ref().volume_condition.as_ref());
        }
    }

    async fn node_expand_rows(&mut self, target: &str) {
        let rpc = "NodeExpandVolume";
        if !self.offers.node(Rpc::ExpandVolume) {
            self.skip(rpc, "every row", "no EXPAND_VOLUME");
            return;
        }
        let r = self
            .node
            .clone()
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: UNKNOWN.into(),
                volume_path: target.into(),
                ..Default::default()
            })
            .await;
        self.expect(rpc, "volume does not exist", Code::NotFound, &r);
    }

    /// A SINGLE_NODE_SINGLE_WRITER volume is published at one target only.
    async fn single_writer_rows(&mut self, id: &str, staged: &str) {
        let spec = "SINGLE_NODE_SINGLE_WRITER, a second target: FAILED_PRECONDITION";
        if !self.offers.node(Rpc::SingleNodeMultiWriter) {
            self.skip(PUBLISH, spec, "no SINGLE_NODE_MULTI_WRITER");
            return;
        }
        let mut n = self.node.clone();
        let single = self.cap(Mode::SingleNodeSingleWriter);
        let (one, two) = (self.path("single-1"), self.path("single-2"));
        // A staging driver stages with the mode it publishes with.
        let stages = !staged.is_empty();
        if stages {
            let _ = n.node_unstage_volume(unstage(id, staged)).await;
            let r = n
                .node_stage_volume(stage(id, staged, Some(single.clone())))
                .await;
            self.expect(
                "NodeStageVolume",
                "stages SINGLE_NODE_SINGLE_WRITER",
                Code::Ok,
                &r,
            );
        }
        let r = n
            .node_publish_volume(publish(id, &one, staged, Some(single.clone())))
            .await;
        self.expect(PUBLISH, "publishes SINGLE_NODE_SINGLE_WRITER", Code::Ok, &r);
        let r = n
            .node_publish_volume(publish(id, &two, staged, Some(single)))
            .await;
        self.expect(PUBLISH, spec, Code::FailedPrecondition, &r);
        for target in [&two, &one] {
            let r = n.node_unpublish_volume(unpublish(id, target)).await;
            self.expect("NodeUnpublishVolume", "unpublishes", Code::Ok, &r);
        }
    }
}
