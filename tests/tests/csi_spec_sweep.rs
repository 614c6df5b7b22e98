//! The CSI spec's "MUST fail with" and idempotency sentences, checked the
//! same way against each bundled driver that offers the RPC (hostpath and
//! loopfs), each over the real socket of its own `wasmvol serve`.
//!
//! Every check is one row: the RPC, what the spec says, and the code it
//! must answer. A sweep runs every row and reports all that fail at once,
//! so one run shows the whole table.

use std::path::{Path, PathBuf};

use tonic::transport::Channel;
use tonic::Code;
use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::group_controller_client::GroupControllerClient;
use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::*;
use wasmvol_tests::csi_requests::{create_req, mount_cap, rw};
use wasmvol_tests::{csi_channel, loops_under, mounts_under, Fixture, FixtureGrants, ServeProcess};

const MIB: i64 = 1 << 20;

/// One driver under test.
struct Sweep {
    controller: ControllerClient<Channel>,
    group: GroupControllerClient<Channel>,
    node: NodeClient<Channel>,
    failures: Vec<String>,
    /// The driver stages (loopfs): publish needs a staging path.
    stages: bool,
    _serve: ServeProcess,
    f: Fixture,
}

fn code<T>(r: &Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

impl Sweep {
    async fn start(driver: &str, grants: FixtureGrants, stages: bool) -> Self {
        wasmvol_tests::require_privileged();
        let f = Fixture::new(driver, grants);
        let serve = ServeProcess::start(&f);
        let ch = csi_channel(&serve.socket).await;
        Self {
            controller: ControllerClient::new(ch.clone()),
            group: GroupControllerClient::new(ch.clone()),
            node: NodeClient::new(ch),
            failures: Vec::new(),
            stages,
            _serve: serve,
            f,
        }
    }

    /// Records a row: `rpc` answered `got`; the spec says `want`.
    fn row<T: std::fmt::Debug>(
        &mut self,
        rpc: &str,
        spec: &str,
        want: Code,
        got: &Result<T, tonic::Status>,
    ) {
        if code(got) != want {
            self.failures
                .push(format!("{rpc}: {spec}: want {want:?}, got {got:?}"));
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        let base = self.f.dir.path().join("kubelet");
        std::fs::create_dir_all(&base).unwrap();
        base.join(name)
    }

    async fn controller_rows(&mut self) {
        let mut c = self.controller.clone();
        let r = c
            .create_volume(CreateVolumeRequest {
                name: String::new(),
                ..create_req("", MIB)
            })
            .await;
        self.row(
            "CreateVolume",
            "name is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .create_volume(CreateVolumeRequest {
                volume_capabilities: vec![],
                ..create_req("sweep-nocaps", MIB)
            })
            .await;
        self.row(
            "CreateVolume",
            "volume_capabilities is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let first = c.create_volume(create_req("sweep-a", 32 * MIB)).await;
        self.row("CreateVolume", "creates a volume", Code::Ok, &first);
        let again = c.create_volume(create_req("sweep-a", 32 * MIB)).await;
        self.row("CreateVolume", "MUST be idempotent", Code::Ok, &again);
        let id = first.unwrap().into_inner().volume.unwrap().volume_id;
        if again
            .as_ref()
            .map(|v| v.get_ref().volume.as_ref().unwrap().volume_id.clone())
            .ok()
            != Some(id.clone())
        {
            self.failures
                .push("CreateVolume: a repeat answers the same volume".into());
        }
        let r = c.create_volume(create_req("sweep-a", 64 * MIB)).await;
        self.row(
            "CreateVolume",
            "same name, incompatible size: ALREADY_EXISTS",
            Code::AlreadyExists,
            &r,
        );

        let r = c
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_id: String::new(),
                volume_capabilities: vec![rw()],
                ..Default::default()
            })
            .await;
        self.row(
            "ValidateVolumeCapabilities",
            "volume_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_id: id.clone(),
                volume_capabilities: vec![],
                ..Default::default()
            })
            .await;
        self.row(
            "ValidateVolumeCapabilities",
            "volume_capabilities is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_id: "sweep-unknown".into(),
                volume_capabilities: vec![rw()],
                ..Default::default()
            })
            .await;
        self.row(
            "ValidateVolumeCapabilities",
            "volume does not exist",
            Code::NotFound,
            &r,
        );

        let r = c
            .list_volumes(ListVolumesRequest {
                max_entries: -1,
                ..Default::default()
            })
            .await;
        self.row(
            "ListVolumes",
            "max_entries MUST NOT be negative",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .list_volumes(ListVolumesRequest {
                starting_token: "no-such-token".into(),
                ..Default::default()
            })
            .await;
        self.row("ListVolumes", "invalid starting_token", Code::Aborted, &r);

        let r = c
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: String::new(),
            })
            .await;
        self.row(
            "ControllerGetVolume",
            "volume_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: "sweep-unknown".into(),
            })
            .await;
        self.row(
            "ControllerGetVolume",
            "volume does not exist",
            Code::NotFound,
            &r,
        );
        let r = c
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: id.clone(),
            })
            .await;
        self.row("ControllerGetVolume", "an existing volume", Code::Ok, &r);
        if let Ok(got) = &r {
            if got
                .get_ref()
                .status
                .as_ref()
                .and_then(|s| s.volume_condition.as_ref())
                .is_none()
            {
                self.failures.push(
                    "ControllerGetVolume: volume_condition MUST be set with VOLUME_CONDITION"
                        .into(),
                );
            }
        }

        let modify = |id: &str, p: &[(&str, &str)]| ControllerModifyVolumeRequest {
            volume_id: id.into(),
            mutable_parameters: p
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let r = c
            .controller_modify_volume(modify("", &[("readOnly", "false")]))
            .await;
        self.row(
            "ControllerModifyVolume",
            "volume_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c.controller_modify_volume(modify(&id, &[])).await;
        self.row(
            "ControllerModifyVolume",
            "mutable_parameters is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .controller_modify_volume(modify(&id, &[("no-such-key", "1")]))
            .await;
        self.row(
            "ControllerModifyVolume",
            "parameters not supported",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .controller_modify_volume(modify("sweep-unknown", &[("readOnly", "false")]))
            .await;
        self.row(
            "ControllerModifyVolume",
            "volume does not exist",
            Code::NotFound,
            &r,
        );
        for _ in 0..2 {
            let r = c
                .controller_modify_volume(modify(&id, &[("readOnly", "false")]))
                .await;
            self.row("ControllerModifyVolume", "MUST be idempotent", Code::Ok, &r);
        }

        let snap = |name: &str, source: &str| CreateSnapshotRequest {
            name: name.into(),
            source_volume_id: source.into(),
            ..Default::default()
        };
        let r = c.create_snapshot(snap("", &id)).await;
        self.row(
            "CreateSnapshot",
            "name is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c.create_snapshot(snap("sweep-s", "")).await;
        self.row(
            "CreateSnapshot",
            "source_volume_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .create_snapshot(snap("sweep-s-unknown", "sweep-unknown"))
            .await;
        self.row(
            "CreateSnapshot",
            "source volume does not exist",
            Code::NotFound,
            &r,
        );
        let s1 = c.create_snapshot(snap("sweep-s", &id)).await;
        self.row("CreateSnapshot", "creates a snapshot", Code::Ok, &s1);
        let s2 = c.create_snapshot(snap("sweep-s", &id)).await;
        self.row("CreateSnapshot", "MUST be idempotent", Code::Ok, &s2);
        let other = c
            .create_volume(create_req("sweep-b", 32 * MIB))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap()
            .volume_id;
        let r = c.create_snapshot(snap("sweep-s", &other)).await;
        self.row(
            "CreateSnapshot",
            "same name, another source: ALREADY_EXISTS",
            Code::AlreadyExists,
            &r,
        );
        let sid = s1.unwrap().into_inner().snapshot.unwrap().snapshot_id;
        let r = c
            .get_snapshot(GetSnapshotRequest {
                snapshot_id: String::new(),
                ..Default::default()
            })
            .await;
        self.row(
            "GetSnapshot",
            "snapshot_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .get_snapshot(GetSnapshotRequest {
                snapshot_id: sid.clone(),
                ..Default::default()
            })
            .await;
        self.row("GetSnapshot", "an existing snapshot", Code::Ok, &r);
        let r = c
            .list_snapshots(ListSnapshotsRequest {
                max_entries: -1,
                ..Default::default()
            })
            .await;
        self.row(
            "ListSnapshots",
            "max_entries MUST NOT be negative",
            Code::InvalidArgument,
            &r,
        );
        let r = c
            .list_snapshots(ListSnapshotsRequest {
                starting_token: "no-such-token".into(),
                ..Default::default()
            })
            .await;
        self.row("ListSnapshots", "invalid starting_token", Code::Aborted, &r);
        let r = c
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: String::new(),
                ..Default::default()
            })
            .await;
        self.row(
            "DeleteSnapshot",
            "snapshot_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        for _ in 0..2 {
            let r = c
                .delete_snapshot(DeleteSnapshotRequest {
                    snapshot_id: sid.clone(),
                    ..Default::default()
                })
                .await;
            self.row(
                "DeleteSnapshot",
                "MUST be idempotent (a missing snapshot is OK)",
                Code::Ok,
                &r,
            );
        }
        let r = c
            .get_snapshot(GetSnapshotRequest {
                snapshot_id: sid.clone(),
                ..Default::default()
            })
            .await;
        self.row("GetSnapshot", "snapshot does not exist", Code::NotFound, &r);

        let mut g = self.group.clone();
        let group = |name: &str, sources: &[&str]| CreateVolumeGroupSnapshotRequest {
            name: name.into(),
            source_volume_ids: sources.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let r = g.create_volume_group_snapshot(group("", &[&id])).await;
        self.row(
            "CreateVolumeGroupSnapshot",
            "name is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = g.create_volume_group_snapshot(group("sweep-g", &[])).await;
        self.row(
            "CreateVolumeGroupSnapshot",
            "source_volume_ids is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let made = g
            .create_volume_group_snapshot(group("sweep-g", &[&id, &other]))
            .await;
        self.row(
            "CreateVolumeGroupSnapshot",
            "creates a group",
            Code::Ok,
            &made,
        );
        let r = g
            .create_volume_group_snapshot(group("sweep-g", &[&id, &other]))
            .await;
        self.row(
            "CreateVolumeGroupSnapshot",
            "MUST be idempotent",
            Code::Ok,
            &r,
        );
        let r = g
            .create_volume_group_snapshot(group("sweep-g", &[&id]))
            .await;
        self.row(
            "CreateVolumeGroupSnapshot",
            "same name, other sources: ALREADY_EXISTS",
            Code::AlreadyExists,
            &r,
        );
        let gid = made
            .unwrap()
            .into_inner()
            .group_snapshot
            .unwrap()
            .group_snapshot_id;
        let r = g
            .get_volume_group_snapshot(GetVolumeGroupSnapshotRequest {
                group_snapshot_id: gid.clone(),
                snapshot_ids: vec!["not-a-member".into()],
                ..Default::default()
            })
            .await;
        self.row(
            "GetVolumeGroupSnapshot",
            "snapshot list mismatch",
            Code::InvalidArgument,
            &r,
        );
        let r = g
            .delete_volume_group_snapshot(DeleteVolumeGroupSnapshotRequest {
                group_snapshot_id: String::new(),
                ..Default::default()
            })
            .await;
        self.row(
            "DeleteVolumeGroupSnapshot",
            "group_snapshot_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        for _ in 0..2 {
            let r = g
                .delete_volume_group_snapshot(DeleteVolumeGroupSnapshotRequest {
                    group_snapshot_id: gid.clone(),
                    ..Default::default()
                })
                .await;
            self.row(
                "DeleteVolumeGroupSnapshot",
                "MUST be idempotent",
                Code::Ok,
                &r,
            );
        }
        let r = g
            .get_volume_group_snapshot(GetVolumeGroupSnapshotRequest {
                group_snapshot_id: gid,
                ..Default::default()
            })
            .await;
        self.row(
            "GetVolumeGroupSnapshot",
            "group does not exist",
            Code::NotFound,
            &r,
        );

        self.node_rows(&id).await;

        let r = c
            .delete_volume(DeleteVolumeRequest {
                volume_id: String::new(),
                ..Default::default()
            })
            .await;
        self.row(
            "DeleteVolume",
            "volume_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        for v in [&id, &other, &id] {
            let r = c
                .delete_volume(DeleteVolumeRequest {
                    volume_id: v.clone(),
                    ..Default::default()
                })
                .await;
            self.row(
                "DeleteVolume",
                "MUST be idempotent (a missing volume is OK)",
                Code::Ok,
                &r,
            );
        }
    }

    async fn node_rows(&mut self, id: &str) {
        let mut n = self.node.clone();
        let staging = self.path("staging");
        let target = self.path("target");
        let s = |p: &Path| p.display().to_string();
        if self.stages {
            let stage =
                |id: &str, path: String, cap: Option<VolumeCapability>| NodeStageVolumeRequest {
                    volume_id: id.into(),
                    staging_target_path: path,
                    volume_capability: cap,
                    ..Default::default()
                };
            let r = n
                .node_stage_volume(stage("", s(&staging), Some(rw())))
                .await;
            self.row(
                "NodeStageVolume",
                "volume_id is REQUIRED",
                Code::InvalidArgument,
                &r,
            );
            let r = n
                .node_stage_volume(stage(id, String::new(), Some(rw())))
                .await;
            self.row(
                "NodeStageVolume",
                "staging_target_path is REQUIRED",
                Code::InvalidArgument,
                &r,
            );
            let r = n.node_stage_volume(stage(id, s(&staging), None)).await;
            self.row(
                "NodeStageVolume",
                "volume_capability is REQUIRED",
                Code::InvalidArgument,
                &r,
            );
            for _ in 0..2 {
                let r = n
                    .node_stage_volume(stage(id, s(&staging), Some(rw())))
                    .await;
                self.row("NodeStageVolume", "MUST be idempotent", Code::Ok, &r);
            }
            let ro = mount_cap(volume_capability::access_mode::Mode::SingleNodeReaderOnly);
            let r = n.node_stage_volume(stage(id, s(&staging), Some(ro))).await;
            self.row(
                "NodeStageVolume",
                "staged with another capability: ALREADY_EXISTS",
                Code::AlreadyExists,
                &r,
            );
        }
        let publish = |id: &str, target: String, staging: String, cap: Option<VolumeCapability>| {
            NodePublishVolumeRequest {
                volume_id: id.into(),
                target_path: target,
                staging_target_path: staging,
                volume_capability: cap,
                ..Default::default()
            }
        };
        let staged = if self.stages {
            s(&staging)
        } else {
            String::new()
        };
        let r = n
            .node_publish_volume(publish("", s(&target), staged.clone(), Some(rw())))
            .await;
        self.row(
            "NodePublishVolume",
            "volume_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = n
            .node_publish_volume(publish(id, String::new(), staged.clone(), Some(rw())))
            .await;
        self.row(
            "NodePublishVolume",
            "target_path is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = n
            .node_publish_volume(publish(id, s(&target), staged.clone(), None))
            .await;
        self.row(
            "NodePublishVolume",
            "volume_capability is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        if self.stages {
            let r = n
                .node_publish_volume(publish(id, s(&target), String::new(), Some(rw())))
                .await;
            self.row(
                "NodePublishVolume",
                "staging target path not set",
                Code::FailedPrecondition,
                &r,
            );
        }
        let r = n
            .node_publish_volume(publish(
                "sweep-unknown",
                s(&target),
                staged.clone(),
                Some(rw()),
            ))
            .await;
        self.row(
            "NodePublishVolume",
            "volume does not exist",
            Code::NotFound,
            &r,
        );
        for _ in 0..2 {
            let r = n
                .node_publish_volume(publish(id, s(&target), staged.clone(), Some(rw())))
                .await;
            self.row("NodePublishVolume", "MUST be idempotent", Code::Ok, &r);
        }
        let ro = NodePublishVolumeRequest {
            readonly: true,
            ..publish(id, s(&target), staged.clone(), Some(rw()))
        };
        let r = n.node_publish_volume(ro).await;
        self.row(
            "NodePublishVolume",
            "published at the target with other arguments: ALREADY_EXISTS",
            Code::AlreadyExists,
            &r,
        );

        let stats = |id: &str, path: String| NodeGetVolumeStatsRequest {
            volume_id: id.into(),
            volume_path: path,
            staging_target_path: String::new(),
        };
        let r = n.node_get_volume_stats(stats("", s(&target))).await;
        self.row(
            "NodeGetVolumeStats",
            "volume_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = n
            .node_get_volume_stats(stats("sweep-unknown", s(&target)))
            .await;
        self.row(
            "NodeGetVolumeStats",
            "volume does not exist at volume_path",
            Code::NotFound,
            &r,
        );
        let r = n
            .node_get_volume_stats(stats(id, s(&self.path("elsewhere"))))
            .await;
        self.row(
            "NodeGetVolumeStats",
            "volume not at volume_path",
            Code::NotFound,
            &r,
        );
        let r = n.node_get_volume_stats(stats(id, s(&target))).await;
        self.row("NodeGetVolumeStats", "a published volume", Code::Ok, &r);
        let r = n
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: "sweep-unknown".into(),
                volume_path: s(&target),
                ..Default::default()
            })
            .await;
        self.row(
            "NodeExpandVolume",
            "volume does not exist",
            Code::NotFound,
            &r,
        );

        let unpublish = |id: &str, target: String| NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target,
        };
        let r = n.node_unpublish_volume(unpublish("", s(&target))).await;
        self.row(
            "NodeUnpublishVolume",
            "volume_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = n.node_unpublish_volume(unpublish(id, String::new())).await;
        self.row(
            "NodeUnpublishVolume",
            "target_path is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        for _ in 0..2 {
            let r = n.node_unpublish_volume(unpublish(id, s(&target))).await;
            self.row("NodeUnpublishVolume", "MUST be idempotent", Code::Ok, &r);
        }
        if self.stages {
            let unstage = |id: &str, path: String| NodeUnstageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: path,
            };
            let r = n.node_unstage_volume(unstage("", s(&staging))).await;
            self.row(
                "NodeUnstageVolume",
                "volume_id is REQUIRED",
                Code::InvalidArgument,
                &r,
            );
            let r = n.node_unstage_volume(unstage(id, String::new())).await;
            self.row(
                "NodeUnstageVolume",
                "staging_target_path is REQUIRED",
                Code::InvalidArgument,
                &r,
            );
            for _ in 0..2 {
                let r = n.node_unstage_volume(unstage(id, s(&staging))).await;
                self.row("NodeUnstageVolume", "MUST be idempotent", Code::Ok, &r);
            }
        }
    }

    fn finish(self) {
        let mounts = mounts_under(self.f.dir.path());
        let loops = loops_under(self.f.dir.path());
        assert!(
            self.failures.is_empty() && mounts.is_empty() && loops.is_empty(),
            "{} rows failed:\n{}\nleft: mounts {mounts:?}, loops {loops:?}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostpath_answers_every_row_as_the_spec_says() {
    let grants = FixtureGrants {
        csi: true,
        ..FixtureGrants::default()
    };
    let mut s = Sweep::start("hostpath", grants, false).await;
    s.controller_rows().await;
    s.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopfs_answers_every_row_as_the_spec_says() {
    let grants = FixtureGrants {
        csi: true,
        device: true,
        deadline_ms: 60_000,
        ..FixtureGrants::default()
    };
    let mut s = Sweep::start("loopfs", grants, true).await;
    s.controller_rows().await;
    s.finish();
}
