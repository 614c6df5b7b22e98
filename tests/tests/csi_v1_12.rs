//! CSI v1.12 beyond the core RPCs, against a `wasmvol serve` process running
//! hostpath over its real socket: ControllerModifyVolume, ControllerGetVolume
//! with volume conditions (controller and node), GetSnapshot and the
//! GroupController service. Each test checks what the spec says an RPC
//! MUST do on success, on a repeat and for each failure it names.

use std::path::{Path, PathBuf};

use tonic::transport::Channel;
use tonic::Code;
use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::group_controller_client::GroupControllerClient;
use wasmvol::csi::proto::identity_client::IdentityClient;
use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::*;
use wasmvol_tests::csi_requests::{create_req, rw};
use wasmvol_tests::{csi_channel, mounts_under, Fixture, FixtureGrants, ServeProcess};

const MIB: i64 = 1 << 20;

// Fields drop in order: clients first, then the host, then the fixture.
struct Csi {
    identity: IdentityClient<Channel>,
    controller: ControllerClient<Channel>,
    group: GroupControllerClient<Channel>,
    node: NodeClient<Channel>,
    _serve: ServeProcess,
    f: Fixture,
}

async fn start() -> Csi {
    wasmvol_tests::require_privileged();
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            csi: true,
            ..FixtureGrants::default()
        },
    );
    let serve = ServeProcess::start(&f);
    let channel = csi_channel(&serve.socket).await;
    Csi {
        identity: IdentityClient::new(channel.clone()),
        controller: ControllerClient::new(channel.clone()),
        group: GroupControllerClient::new(channel.clone()),
        node: NodeClient::new(channel),
        _serve: serve,
        f,
    }
}

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

fn params(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Csi {
    async fn create(&mut self, name: &str) -> Volume {
        self.create_from(name, None).await
    }

    async fn create_from(&mut self, name: &str, snapshot: Option<&str>) -> Volume {
        self.controller
            .create_volume(CreateVolumeRequest {
                volume_content_source: snapshot.map(|id| VolumeContentSource {
                    r#type: Some(volume_content_source::Type::Snapshot(
                        volume_content_source::SnapshotSource {
                            snapshot_id: id.into(),
                        },
                    )),
                }),
                ..create_req(name, MIB)
            })
            .await
            .expect("create")
            .into_inner()
            .volume
            .expect("volume")
    }

    fn volume_dir(&self, id: &str) -> PathBuf {
        self.f.root().join("volumes").join(id)
    }

    fn target(&self, name: &str) -> PathBuf {
        self.f.dir.path().join("targets").join(name)
    }

    async fn publish(&mut self, volume_id: &str, target: &Path) {
        self.node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: volume_id.into(),
                target_path: target.display().to_string(),
                volume_capability: Some(rw()),
                ..Default::default()
            })
            .await
            .expect("publish");
    }

    async fn unpublish(&mut self, volume_id: &str, target: &Path) {
        self.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: volume_id.into(),
                target_path: target.display().to_string(),
            })
            .await
            .expect("unpublish");
    }

    async fn modify(&mut self, volume_id: &str, p: &[(&str, &str)]) -> Result<(), tonic::Status> {
        self.controller
            .controller_modify_volume(ControllerModifyVolumeRequest {
                volume_id: volume_id.into(),
                mutable_parameters: params(p),
                ..Default::default()
            })
            .await
            .map(|_| ())
    }

    async fn get_volume(
        &mut self,
        volume_id: &str,
    ) -> Result<ControllerGetVolumeResponse, tonic::Status> {
        self.controller
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: volume_id.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    async fn snapshot_ids(&mut self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .controller
            .list_snapshots(ListSnapshotsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries
            .into_iter()
            .filter_map(|e| e.snapshot.map(|s| s.snapshot_id))
            .collect();
        ids.sort();
        ids
    }

    fn snapshot_dirs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.f.root().join("snapshots"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Whether a file can be created at a published target.
fn writable(target: &Path) -> std::io::Result<()> {
    std::fs::write(target.join("probe"), b"x")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_offer_modify_get_conditions_and_group_snapshots() {
    let mut c = start().await;
    use controller_service_capability::rpc::Type as R;
    let rpcs: Vec<i32> = c
        .controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .into_iter()
        .filter_map(|c| {
            c.r#type
                .map(|controller_service_capability::Type::Rpc(r)| r.r#type)
        })
        .collect();
    for want in [
        R::ModifyVolume,
        R::GetVolume,
        R::VolumeCondition,
        R::GetSnapshot,
        R::SingleNodeMultiWriter,
    ] {
        assert!(
            rpcs.contains(&(want as i32)),
            "{want:?} missing from {rpcs:?}"
        );
    }
    use node_service_capability::rpc::Type as N;
    let node: Vec<i32> = c
        .node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .into_iter()
        .filter_map(|c| {
            c.r#type
                .map(|node_service_capability::Type::Rpc(r)| r.r#type)
        })
        .collect();
    assert!(node.contains(&(N::VolumeCondition as i32)), "{node:?}");
    let plugin = c
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    use plugin_capability::{service, Type};
    assert!(plugin.iter().any(|c| matches!(&c.r#type,
        Some(Type::Service(s)) if s.r#type == service::Type::GroupControllerService as i32)));
    let group = c
        .group
        .group_controller_get_capabilities(GroupControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert_eq!(group.len(), 1, "{group:?}");
    assert!(matches!(
        &group[0].r#type,
        Some(group_controller_service_capability::Type::Rpc(r))
            if r.r#type == group_controller_service_capability::rpc::Type::CreateDeleteGetVolumeGroupSnapshot as i32
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_volume_makes_later_publishes_read_only_and_refuses_what_it_cannot_do() {
    let mut c = start().await;
    let v = c.create("pvc-modify").await;
    let id = v.volume_id.clone();
    let t = c.target("modify");

    // The spec's failures: no volume id, no parameters, an unknown key or
    // value (INVALID_ARGUMENT), an unknown volume (NOT_FOUND).
    assert_eq!(
        code(c.modify("", &[("readOnly", "true")]).await),
        Code::InvalidArgument
    );
    let e = c.modify(&id, &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("mutable_parameters"), "{e:?}");
    let e = c.modify(&id, &[("iops", "9000")]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("iops"), "{e:?}");
    let e = c.modify(&id, &[("readOnly", "maybe")]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        code(c.modify("hp-unknown", &[("readOnly", "true")]).await),
        Code::NotFound
    );

    // A refused modification changed nothing: the volume publishes writable.
    c.publish(&id, &t).await;
    writable(&t).expect("writable before any modification");
    c.unpublish(&id, &t).await;

    // The change itself, then its repeat (idempotent): the kernel refuses writes.
    c.modify(&id, &[("readOnly", "true")]).await.unwrap();
    c.modify(&id, &[("readOnly", "true")]).await.unwrap();
    c.publish(&id, &t).await;
    let e = writable(&t).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e:?}");
    c.unpublish(&id, &t).await;

    c.modify(&id, &[("readOnly", "false")]).await.unwrap();
    c.publish(&id, &t).await;
    writable(&t).expect("writable again");
    c.unpublish(&id, &t).await;
    assert!(mounts_under(c.f.dir.path()).is_empty());

    // Every modification reached the driver as one audited call, without secrets.
    let calls: Vec<_> =
        c.f.audit()
            .into_iter()
            .filter(|r| r["operation"] == "call:modify-volume")
            .collect();
    assert_eq!(calls.len(), 6, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_volume_and_stats_report_a_volume_whose_directory_went_missing() {
    let mut c = start().await;
    let v = c.create("pvc-condition").await;
    let id = v.volume_id.clone();
    assert_eq!(code(c.get_volume("").await), Code::InvalidArgument);
    assert_eq!(code(c.get_volume("hp-unknown").await), Code::NotFound);

    let got = c.get_volume(&id).await.unwrap();
    assert_eq!(got.volume.as_ref().unwrap().volume_id, id);
    assert_eq!(got.volume.unwrap().capacity_bytes, MIB);
    let cond = got
        .status
        .unwrap()
        .volume_condition
        .expect("condition is required");
    assert!(!cond.abnormal, "{cond:?}");

    let t = c.target("condition");
    c.publish(&id, &t).await;
    let stats = |c: &mut Csi| {
        let req = NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: t.display().to_string(),
            staging_target_path: String::new(),
        };
        let mut node = c.node.clone();
        async move { node.node_get_volume_stats(req).await.unwrap().into_inner() }
    };
    let healthy = stats(&mut c).await;
    assert!(!healthy.volume_condition.unwrap().abnormal);
    assert!(!healthy.usage.is_empty());

    // The directory leaves the storage root behind the driver's back.
    let aside = c.f.root().join("aside");
    std::fs::rename(c.volume_dir(&id), &aside).unwrap();
    let cond = c
        .get_volume(&id)
        .await
        .unwrap()
        .status
        .unwrap()
        .volume_condition
        .unwrap();
    assert!(
        cond.abnormal && cond.message.contains("missing"),
        "{cond:?}"
    );
    let listed = c
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let entry = listed
        .iter()
        .find(|e| e.volume.as_ref().unwrap().volume_id == id)
        .unwrap();
    assert!(
        entry
            .status
            .as_ref()
            .unwrap()
            .volume_condition
            .as_ref()
            .unwrap()
            .abnormal
    );
    let sick = stats(&mut c).await;
    let cond = sick.volume_condition.unwrap();
    assert!(
        cond.abnormal && cond.message.contains("missing"),
        "{cond:?}"
    );

    std::fs::rename(&aside, c.volume_dir(&id)).unwrap();
    assert!(
        !c.get_volume(&id)
            .await
            .unwrap()
            .status
            .unwrap()
            .volume_condition
            .unwrap()
            .abnormal
    );
    c.unpublish(&id, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_snapshot_answers_a_snapshot_until_it_is_deleted() {
    let mut c = start().await;
    let v = c.create("pvc-getsnap").await;
    let get = |c: &mut Csi, id: &str| {
        let mut ctl = c.controller.clone();
        let req = GetSnapshotRequest {
            snapshot_id: id.into(),
            ..Default::default()
        };
        async move {
            ctl.get_snapshot(req)
                .await
                .map(|r| r.into_inner().snapshot.unwrap())
        }
    };
    assert_eq!(code(get(&mut c, "").await), Code::InvalidArgument);
    assert_eq!(code(get(&mut c, "snap-unknown").await), Code::NotFound);
    let s = c
        .controller
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: v.volume_id.clone(),
            name: "getsnap".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    let got = get(&mut c, &s.snapshot_id).await.unwrap();
    assert_eq!(got, s);
    assert!(got.group_snapshot_id.is_empty());
    c.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(code(get(&mut c, &s.snapshot_id).await), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_snapshot_of_three_volumes_restores_the_same_moment() {
    let mut c = start().await;
    let mut sources = Vec::new();
    for n in ["a", "b", "c"] {
        let v = c.create(&format!("pvc-group-{n}")).await;
        std::fs::write(
            c.volume_dir(&v.volume_id).join("data"),
            format!("{n} before"),
        )
        .unwrap();
        sources.push(v.volume_id);
    }
    let create = |c: &mut Csi, name: &str, sources: &[String]| {
        let mut g = c.group.clone();
        let req = CreateVolumeGroupSnapshotRequest {
            name: name.into(),
            source_volume_ids: sources.to_vec(),
            ..Default::default()
        };
        async move {
            g.create_volume_group_snapshot(req)
                .await
                .map(|r| r.into_inner().group_snapshot.unwrap())
        }
    };
    // Failures the spec names, none of which may leave a snapshot behind.
    assert_eq!(
        code(create(&mut c, "", &sources).await),
        Code::InvalidArgument
    );
    assert_eq!(code(create(&mut c, "g", &[]).await), Code::InvalidArgument);
    let with_unknown = [sources[0].clone(), "hp-unknown".to_string()];
    assert_eq!(
        code(create(&mut c, "g-bad", &with_unknown).await),
        Code::NotFound
    );
    assert!(c.snapshot_ids().await.is_empty());
    assert!(c.snapshot_dirs().is_empty(), "{:?}", c.snapshot_dirs());

    let g = create(&mut c, "g", &sources).await.unwrap();
    assert!(g.ready_to_use && g.creation_time.is_some());
    assert_eq!(g.snapshots.len(), 3);
    for (s, source) in g.snapshots.iter().zip(&sources) {
        assert_eq!(&s.source_volume_id, source);
        assert_eq!(s.group_snapshot_id, g.group_snapshot_id);
    }
    let members: Vec<String> = g.snapshots.iter().map(|s| s.snapshot_id.clone()).collect();
    for (v, n) in sources.iter().zip(["a", "b", "c"]) {
        std::fs::write(c.volume_dir(v).join("data"), format!("{n} after")).unwrap();
    }
    // Idempotent by name: the same group, not a second one taken now.
    let again = create(&mut c, "g", &sources).await.unwrap();
    assert_eq!(again, g);
    assert_eq!(
        code(create(&mut c, "g", &sources[..2]).await),
        Code::AlreadyExists
    );

    let get = |c: &mut Csi, id: &str, ids: &[String]| {
        let mut gc = c.group.clone();
        let req = GetVolumeGroupSnapshotRequest {
            group_snapshot_id: id.into(),
            snapshot_ids: ids.to_vec(),
            ..Default::default()
        };
        async move {
            gc.get_volume_group_snapshot(req)
                .await
                .map(|r| r.into_inner().group_snapshot.unwrap())
        }
    };
    assert_eq!(
        get(&mut c, &g.group_snapshot_id, &members).await.unwrap(),
        g
    );
    assert_eq!(
        code(get(&mut c, &g.group_snapshot_id, &members[..1]).await),
        Code::InvalidArgument
    );
    assert_eq!(code(get(&mut c, "", &members).await), Code::InvalidArgument);
    assert_eq!(
        code(get(&mut c, "group-unknown", &[]).await),
        Code::NotFound
    );

    // A member is deleted with its group, not alone.
    let alone = c
        .controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: members[0].clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(alone), Code::InvalidArgument);
    let member = c
        .controller
        .get_snapshot(GetSnapshotRequest {
            snapshot_id: members[1].clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(member.group_snapshot_id, g.group_snapshot_id);

    // Each member restores the data of the moment the group was taken.
    for (i, (s, n)) in g.snapshots.iter().zip(["a", "b", "c"]).enumerate() {
        let restored = c
            .create_from(&format!("pvc-restored-{i}"), Some(&s.snapshot_id))
            .await;
        let data = std::fs::read_to_string(c.volume_dir(&restored.volume_id).join("data")).unwrap();
        assert_eq!(data, format!("{n} before"));
    }

    let delete = |c: &mut Csi, id: &str, ids: &[String]| {
        let mut gc = c.group.clone();
        let req = DeleteVolumeGroupSnapshotRequest {
            group_snapshot_id: id.into(),
            snapshot_ids: ids.to_vec(),
            ..Default::default()
        };
        async move { gc.delete_volume_group_snapshot(req).await.map(|_| ()) }
    };
    assert_eq!(
        code(delete(&mut c, &g.group_snapshot_id, &members[1..]).await),
        Code::InvalidArgument
    );
    assert_eq!(
        c.snapshot_ids().await.len(),
        3,
        "a refused delete removes nothing"
    );
    delete(&mut c, &g.group_snapshot_id, &members)
        .await
        .unwrap();
    assert!(c.snapshot_ids().await.is_empty());
    assert!(c.snapshot_dirs().is_empty(), "{:?}", c.snapshot_dirs());
    assert_eq!(
        code(get(&mut c, &g.group_snapshot_id, &[]).await),
        Code::NotFound
    );
    // Deleting what is gone is success.
    delete(&mut c, &g.group_snapshot_id, &members)
        .await
        .unwrap();
}
