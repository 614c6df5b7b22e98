//! Snapshot rows: CreateSnapshot, GetSnapshot, ListSnapshots and
//! DeleteSnapshot, and the GroupController's group snapshots.

use tonic::Code;

use super::controller::UNKNOWN;
use super::{Sweep, Verdict};
use crate::csi::proto::controller_service_capability::rpc::Type as Rpc;
use crate::csi::proto::*;

impl Sweep {
    pub(super) async fn snapshot_rows(&mut self, id: &str, other: &str) {
        if !self.offers.controller(Rpc::CreateDeleteSnapshot) {
            self.skip("CreateSnapshot", "every row", "no CREATE_DELETE_SNAPSHOT");
            return;
        }
        let mut c = self.controller.clone();
        let snap = |name: &str, source: &str| CreateSnapshotRequest {
            name: name.into(),
            source_volume_id: source.into(),
            ..Default::default()
        };
        let rpc = "CreateSnapshot";
        let r = c.create_snapshot(snap("", id)).await;
        self.expect(rpc, "name is REQUIRED", Code::InvalidArgument, &r);
        let r = c.create_snapshot(snap("sweep-s", "")).await;
        self.expect(
            rpc,
            "source_volume_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = c.create_snapshot(snap("sweep-s-unknown", UNKNOWN)).await;
        self.expect(rpc, "source volume does not exist", Code::NotFound, &r);
        let first = c.create_snapshot(snap("sweep-s", id)).await;
        self.expect(rpc, "creates a snapshot", Code::Ok, &first);
        let r = c.create_snapshot(snap("sweep-s", id)).await;
        self.expect(rpc, "MUST be idempotent", Code::Ok, &r);
        let r = c.create_snapshot(snap("sweep-s", other)).await;
        self.expect(
            rpc,
            "same name, another source: ALREADY_EXISTS",
            Code::AlreadyExists,
            &r,
        );
        let Some(sid) = first
            .ok()
            .and_then(|s| s.into_inner().snapshot)
            .map(|s| s.snapshot_id)
        else {
            self.skip(
                "(snapshots)",
                "rows that need a snapshot",
                "CreateSnapshot made none",
            );
            return;
        };

        self.get_snapshot_rows(&sid, Code::Ok).await;
        self.list_snapshot_rows(&sid).await;

        let rpc = "DeleteSnapshot";
        let delete = |id: &str| DeleteSnapshotRequest {
            snapshot_id: id.into(),
            ..Default::default()
        };
        let r = c.delete_snapshot(delete("")).await;
        self.expect(rpc, "snapshot_id is REQUIRED", Code::InvalidArgument, &r);
        for _ in 0..2 {
            let r = c.delete_snapshot(delete(&sid)).await;
            self.expect(
                rpc,
                "MUST be idempotent (a missing snapshot is OK)",
                Code::Ok,
                &r,
            );
        }
        self.get_snapshot_rows(&sid, Code::NotFound).await;
    }

    /// GetSnapshot of `sid`, which must answer `want` (OK while it exists).
    async fn get_snapshot_rows(&mut self, sid: &str, want: Code) {
        let rpc = "GetSnapshot";
        if !self.offers.controller(Rpc::GetSnapshot) {
            if want == Code::Ok {
                self.skip(rpc, "every row", "no GET_SNAPSHOT");
            }
            return;
        }
        let mut c = self.controller.clone();
        let get = |id: &str| GetSnapshotRequest {
            snapshot_id: id.into(),
            ..Default::default()
        };
        if want == Code::Ok {
            let r = c.get_snapshot(get("")).await;
            self.expect(rpc, "snapshot_id is REQUIRED", Code::InvalidArgument, &r);
            let r = c.get_snapshot(get(sid)).await;
            self.expect(rpc, "an existing snapshot", Code::Ok, &r);
        } else {
            let r = c.get_snapshot(get(sid)).await;
            self.expect(rpc, "snapshot does not exist", want, &r);
        }
    }

    async fn list_snapshot_rows(&mut self, sid: &str) {
        let rpc = "ListSnapshots";
        if !self.offers.controller(Rpc::ListSnapshots) {
            self.skip(rpc, "every row", "no LIST_SNAPSHOTS");
            return;
        }
        let mut c = self.controller.clone();
        let negative = c
            .list_snapshots(ListSnapshotsRequest {
                max_entries: -1,
                ..Default::default()
            })
            .await;
        let unknown_token = c
            .list_snapshots(ListSnapshotsRequest {
                starting_token: "no-such-token".into(),
                ..Default::default()
            })
            .await;
        self.paging_rows(rpc, &negative, &unknown_token);
        let by_id = |id: &str| ListSnapshotsRequest {
            snapshot_id: id.into(),
            ..Default::default()
        };
        let spec = "snapshot_id filter: exactly that snapshot";
        match c.list_snapshots(by_id(sid)).await {
            Ok(r) => {
                let ids: Vec<String> = r
                    .into_inner()
                    .entries
                    .into_iter()
                    .filter_map(|e| e.snapshot.map(|s| s.snapshot_id))
                    .collect();
                if ids == [sid] {
                    self.report.push(rpc, spec, Verdict::Passed);
                } else {
                    self.fail(rpc, spec, format!("listed {ids:?}"));
                }
            }
            Err(e) => self.fail(rpc, spec, format!("{e}")),
        }
        let spec = "an unknown snapshot_id: an empty list, not an error";
        match c.list_snapshots(by_id("sweep-no-such-snapshot")).await {
            Ok(r) if r.get_ref().entries.is_empty() => self.report.push(rpc, spec, Verdict::Passed),
            Ok(r) => self.fail(rpc, spec, format!("{} entries", r.get_ref().entries.len())),
            Err(e) => self.fail(rpc, spec, format!("{e}")),
        }
    }

    pub(super) async fn group_rows(&mut self, id: &str, other: &str) {
        let rpc = "CreateVolumeGroupSnapshot";
        if !self.offers.groups() {
            self.skip(
                rpc,
                "every row",
                "no GROUP_CONTROLLER_SERVICE with CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT",
            );
            return;
        }
        let mut g = self.group.clone();
        let group = |name: &str, sources: &[&str]| CreateVolumeGroupSnapshotRequest {
            name: name.into(),
            source_volume_ids: sources.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let r = g.create_volume_group_snapshot(group("", &[id])).await;
        self.expect(rpc, "name is REQUIRED", Code::InvalidArgument, &r);
        let r = g.create_volume_group_snapshot(group("sweep-g", &[])).await;
        self.expect(
            rpc,
            "source_volume_ids is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let made = g
            .create_volume_group_snapshot(group("sweep-g", &[id, other]))
            .await;
        self.expect(rpc, "creates a group", Code::Ok, &made);
        let r = g
            .create_volume_group_snapshot(group("sweep-g", &[id, other]))
            .await;
        self.expect(rpc, "MUST be idempotent", Code::Ok, &r);
        let r = g
            .create_volume_group_snapshot(group("sweep-g", &[id]))
            .await;
        self.expect(
            rpc,
            "same name, other sources: ALREADY_EXISTS",
            Code::AlreadyExists,
            &r,
        );
        let Some(gid) = made
            .ok()
            .and_then(|m| m.into_inner().group_snapshot)
            .map(|g| g.group_snapshot_id)
        else {
            self.skip("(groups)", "rows that need a group", "no group was made");
            return;
        };
        let get = |gid: &str, members: Vec<String>| GetVolumeGroupSnapshotRequest {
            group_snapshot_id: gid.into(),
            snapshot_ids: members,
            ..Default::default()
        };
        let rpc = "GetVolumeGroupSnapshot";
        let r = g.get_volume_group_snapshot(get("", vec![])).await;
        self.expect(
            rpc,
            "group_snapshot_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        let r = g
            .get_volume_group_snapshot(get(&gid, vec!["not-a-member".into()]))
            .await;
        self.expect(rpc, "snapshot list mismatch", Code::InvalidArgument, &r);
        let r = g.get_volume_group_snapshot(get(&gid, vec![])).await;
        self.expect(rpc, "an existing group", Code::Ok, &r);

        let rpc = "DeleteVolumeGroupSnapshot";
        let delete = |gid: &str| DeleteVolumeGroupSnapshotRequest {
            group_snapshot_id: gid.into(),
            ..Default::default()
        };
        let r = g.delete_volume_group_snapshot(delete("")).await;
        self.expect(
            rpc,
            "group_snapshot_id is REQUIRED",
            Code::InvalidArgument,
            &r,
        );
        for _ in 0..2 {
            let r = g.delete_volume_group_snapshot(delete(&gid)).await;
            self.expect(rpc, "MUST be idempotent", Code::Ok, &r);
        }
        let r = g.get_volume_group_snapshot(get(&gid, vec![])).await;
        self.expect(
            "GetVolumeGroupSnapshot",
            "group does not exist",
            Code::NotFound,
            &r,
        );
    }
}
