//! CSI conformance: a tonic client drives the real socket of a `wasmvol
//! serve` process running the hostpath driver, success and failure paths of
//! every RPC hostpath advertises.

use std::collections::HashMap;
use std::path::Path;

use tonic::Code;
use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::identity_client::IdentityClient;
use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::*;
use wasmvol_tests::csi_requests::{create_req, mount_cap, rw};
use wasmvol_tests::{csi_channel, mounts_under, Fixture, FixtureGrants, ServeProcess};

const MIB: i64 = 1 << 20;

// Fields drop in order: clients first, then the host, then the fixture.
struct Csi {
    identity: IdentityClient<tonic::transport::Channel>,
    controller: ControllerClient<tonic::transport::Channel>,
    node: NodeClient<tonic::transport::Channel>,
    serve: ServeProcess,
    f: Fixture,
}

async fn start() -> Csi {
    start_with(FixtureGrants {
        csi: true,
        ..FixtureGrants::default()
    })
    .await
}

async fn start_with(grants: FixtureGrants) -> Csi {
    let f = Fixture::new("hostpath", grants);
    let serve = ServeProcess::start(&f);
    let channel = csi_channel(&serve.socket).await;
    Csi {
        identity: IdentityClient::new(channel.clone()),
        controller: ControllerClient::new(channel.clone()),
        node: NodeClient::new(channel),
        serve,
        f,
    }
}

impl Csi {
    async fn plugin_capabilities(&mut self) -> Vec<PluginCapability> {
        self.identity
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner()
            .capabilities
    }
}

fn publish_req(volume_id: &str, target: &Path, readonly: bool) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: volume_id.into(),
        target_path: target.display().to_string(),
        volume_capability: Some(rw()),
        readonly,
        ..Default::default()
    }
}

fn unpublish_req(volume_id: &str, target: &Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: volume_id.into(),
        target_path: target.display().to_string(),
    }
}

impl Csi {
    async fn create(&mut self, name: &str, bytes: i64) -> Volume {
        self.controller
            .create_volume(create_req(name, bytes))
            .await
            .expect("create")
            .into_inner()
            .volume
            .expect("volume")
    }

    /// A target path kubelet would pass (its parent exists, it does not).
    fn target(&self, name: &str) -> std::path::PathBuf {
        self.f.dir.path().join("targets").join(name)
    }
}

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_reports_name_capabilities_and_readiness() {
    let mut c = start().await;
    let info = c
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "hostpath.csi.wasmvol.io");
    assert_eq!(info.vendor_version, "0.1.0");
    let caps = c.plugin_capabilities().await;
    use plugin_capability::{service, volume_expansion, Type};
    assert!(caps.iter().any(|c| matches!(&c.r#type,
        Some(Type::Service(s)) if s.r#type == service::Type::ControllerService as i32)));
    assert!(caps.iter().any(|c| matches!(&c.r#type,
        Some(Type::VolumeExpansion(e)) if e.r#type == volume_expansion::Type::Online as i32)));
    let probe = c
        .identity
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));

    let ctrl = c
        .controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let rpcs: Vec<i32> = ctrl
        .iter()
        .filter_map(|c| {
            c.r#type
                .as_ref()
                .map(|controller_service_capability::Type::Rpc(r)| r.r#type)
        })
        .collect();
    use controller_service_capability::rpc::Type as R;
    for want in [
        R::CreateDeleteVolume,
        R::ListVolumes,
        R::GetCapacity,
        R::CreateDeleteSnapshot,
        R::ListSnapshots,
        R::CloneVolume,
    ] {
        assert!(
            rpcs.contains(&(want as i32)),
            "{want:?} missing from {rpcs:?}"
        );
    }
    assert!(!rpcs.contains(&(R::PublishUnpublishVolume as i32)));
    // hostpath is node-local: its volumes grow at the node alone.
    assert!(!rpcs.contains(&(R::ExpandVolume as i32)));
    let node = c
        .node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.node_id, "test-node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_validates_and_is_idempotent() {
    let mut c = start().await;
    let mut no_name = create_req("", MIB);
    no_name.name.clear();
    assert_eq!(
        code(c.controller.create_volume(no_name).await),
        Code::InvalidArgument
    );
    let mut no_cap = create_req("a", MIB);
    no_cap.volume_capabilities.clear();
    assert_eq!(
        code(c.controller.create_volume(no_cap).await),
        Code::InvalidArgument
    );
    let mut no_mode = create_req("a", MIB);
    no_mode.volume_capabilities[0].access_mode = None;
    assert_eq!(
        code(c.controller.create_volume(no_mode).await),
        Code::InvalidArgument
    );
    let mut bad_range = create_req("a", 10 * MIB);
    bad_range.capacity_range.as_mut().unwrap().limit_bytes = MIB;
    assert_eq!(
        code(c.controller.create_volume(bad_range).await),
        Code::OutOfRange
    );

    let first = c.create("pvc-1", MIB).await;
    let again = c.create("pvc-1", MIB).await;
    assert_eq!(first.volume_id, again.volume_id);
    assert_eq!(first.capacity_bytes, MIB);
    assert_eq!(
        code(
            c.controller
                .create_volume(create_req("pvc-1", 2 * MIB))
                .await
        ),
        Code::AlreadyExists
    );

    // Delete is idempotent, and an unknown id is fine.
    for id in [
        first.volume_id.as_str(),
        first.volume_id.as_str(),
        "no-such-volume",
    ] {
        c.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                secrets: HashMap::new(),
            })
            .await
            .unwrap();
    }
    assert_eq!(
        code(
            c.controller
                .delete_volume(DeleteVolumeRequest::default())
                .await
        ),
        Code::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_validates_and_is_idempotent() {
    let mut c = start().await;
    let v = c.create("pvc-pub", MIB).await;
    let target = c.target("pod-a");

    let mut no_target = publish_req(&v.volume_id, &target, false);
    no_target.target_path.clear();
    assert_eq!(
        code(c.node.node_publish_volume(no_target).await),
        Code::InvalidArgument
    );
    let mut no_cap = publish_req(&v.volume_id, &target, false);
    no_cap.volume_capability = None;
    assert_eq!(
        code(c.node.node_publish_volume(no_cap).await),
        Code::InvalidArgument
    );
    let mut no_id = publish_req(&v.volume_id, &target, false);
    no_id.volume_id.clear();
    assert_eq!(
        code(c.node.node_publish_volume(no_id).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.node
                .node_publish_volume(publish_req("nope", &target, false))
                .await
        ),
        Code::NotFound
    );
    for odd in ["relative/target", "/a/../etc", "/a//b", "/a/./b"] {
        assert_eq!(
            code(
                c.node
                    .node_publish_volume(publish_req(&v.volume_id, Path::new(odd), false))
                    .await
            ),
            Code::InvalidArgument,
            "{odd}"
        );
    }
    assert!(!target.exists(), "a failed publish leaves no target behind");

    for _ in 0..2 {
        c.node
            .node_publish_volume(publish_req(&v.volume_id, &target, false))
            .await
            .unwrap();
    }
    assert_eq!(mounts_under(&target), vec![target.clone()]);
    assert_eq!(
        code(
            c.node
                .node_publish_volume(publish_req(&v.volume_id, &target, true))
                .await
        ),
        Code::AlreadyExists
    );
    for _ in 0..2 {
        c.node
            .node_unpublish_volume(unpublish_req(&v.volume_id, &target))
            .await
            .unwrap();
    }
    assert!(mounts_under(c.f.dir.path()).is_empty());
    assert!(!target.exists(), "unpublish removes the target it created");

    // A target that was there before the publish (made by someone else) stays.
    std::fs::create_dir_all(&target).unwrap();
    c.node
        .node_publish_volume(publish_req(&v.volume_id, &target, false))
        .await
        .unwrap();
    c.node
        .node_unpublish_volume(unpublish_req(&v.volume_id, &target))
        .await
        .unwrap();
    assert!(mounts_under(c.f.dir.path()).is_empty());
    assert!(
        target.is_dir(),
        "unpublish removed a target it did not make"
    );
    std::fs::remove_dir(&target).unwrap();

    let stats = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: v.volume_id.clone(),
            volume_path: c.target("missing").display().to_string(),
            staging_target_path: String::new(),
        })
        .await;
    assert_eq!(code(stats), Code::NotFound);
    let stage = c
        .node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: v.volume_id.clone(),
            staging_target_path: c.target("staging").display().to_string(),
            volume_capability: Some(rw()),
            ..Default::default()
        })
        .await;
    assert_eq!(code(stage), Code::Unimplemented, "hostpath does not stage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_keeps_data_across_republish() {
    let mut c = start().await;
    let v = c.create("pvc-life", MIB).await;
    let target = c.target("pod-life");
    c.node
        .node_publish_volume(publish_req(&v.volume_id, &target, false))
        .await
        .unwrap();
    std::fs::write(target.join("data.txt"), b"kept").unwrap();
    let stats = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: v.volume_id.clone(),
            volume_path: target.display().to_string(),
            staging_target_path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 2);
    assert_eq!(stats.usage[0].total, MIB);
    // A volume that is not at the path, or a path no volume could be at:
    // NOT_FOUND (CSI), for stats and expansion alike, before the path is touched.
    for (volume_id, path) in [
        ("no-such-volume".to_string(), target.display().to_string()),
        ("no-such-volume".to_string(), "relative/path".to_string()),
        (v.volume_id.clone(), "../../etc".to_string()),
        (v.volume_id.clone(), c.f.outside().display().to_string()),
    ] {
        let stats = c
            .node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: volume_id.clone(),
                volume_path: path.clone(),
                staging_target_path: String::new(),
            })
            .await;
        assert_eq!(code(stats), Code::NotFound, "stats {volume_id} at {path}");
        let expand = c
            .node
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: volume_id.clone(),
                volume_path: path.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(expand), Code::NotFound, "expand {volume_id} at {path}");
    }
    let no_path = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        code(no_path),
        Code::InvalidArgument,
        "a missing field is invalid"
    );
    c.node
        .node_unpublish_volume(unpublish_req(&v.volume_id, &target))
        .await
        .unwrap();
    // Republished read-only elsewhere: the data is there, writes are refused.
    let again = c.target("pod-life-2");
    c.node
        .node_publish_volume(publish_req(&v.volume_id, &again, true))
        .await
        .unwrap();
    assert_eq!(std::fs::read(again.join("data.txt")).unwrap(), b"kept");
    assert!(std::fs::write(again.join("x"), b"x").is_err());
    c.node
        .node_unpublish_volume(unpublish_req(&v.volume_id, &again))
        .await
        .unwrap();

    // Expansion.
    let e = c
        .controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: v.volume_id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 4 * MIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.capacity_bytes, 4 * MIB);
    assert!(!e.node_expansion_required);
    assert_eq!(
        code(
            c.controller
                .controller_expand_volume(ControllerExpandVolumeRequest {
                    volume_id: v.volume_id.clone(),
                    ..Default::default()
                })
                .await
        ),
        Code::InvalidArgument
    );
    assert!(mounts_under(c.f.dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_volumes_pages() {
    let mut c = start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(c.create(&format!("pvc-list-{i}"), MIB).await.volume_id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .controller
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.entries.len() <= 2);
        seen.extend(
            page.entries
                .into_iter()
                .map(|e| e.volume.unwrap().volume_id),
        );
        token = page.next_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    let bad = c
        .controller
        .list_volumes(ListVolumesRequest {
            max_entries: 2,
            starting_token: "not-a-token".into(),
        })
        .await;
    assert_eq!(code(bad), Code::Aborted);
    let negative = c
        .controller
        .list_volumes(ListVolumesRequest {
            max_entries: -1,
            starting_token: String::new(),
        })
        .await;
    assert_eq!(code(negative), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_list_delete_and_restore() {
    let mut c = start().await;
    let v = c.create("pvc-snap", MIB).await;
    std::fs::write(
        c.f.root().join("volumes").join(&v.volume_id).join("f"),
        b"snapshotted",
    )
    .unwrap();
    let snap_req = CreateSnapshotRequest {
        source_volume_id: v.volume_id.clone(),
        name: "snap-a".into(),
        ..Default::default()
    };
    let s = c
        .controller
        .create_snapshot(snap_req.clone())
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    let s2 = c
        .controller
        .create_snapshot(snap_req)
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(s.snapshot_id, s2.snapshot_id);
    assert!(s.ready_to_use && s.creation_time.is_some());
    assert_eq!(
        code(
            c.controller
                .create_snapshot(CreateSnapshotRequest {
                    name: "snap-b".into(),
                    ..Default::default()
                })
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            c.controller
                .create_snapshot(CreateSnapshotRequest {
                    source_volume_id: "nope".into(),
                    name: "snap-c".into(),
                    ..Default::default()
                })
                .await
        ),
        Code::NotFound
    );

    let by_id = c
        .controller
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.entries.len(), 1);
    let by_source = c
        .controller
        .list_snapshots(ListSnapshotsRequest {
            source_volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_source.entries.len(), 1);
    let none = c
        .controller
        .list_snapshots(ListSnapshotsRequest {
            source_volume_id: "other".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.entries.is_empty());

    let mut restore = create_req("pvc-restored", MIB);
    restore.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: s.snapshot_id.clone(),
            },
        )),
    });
    let restored = c
        .controller
        .create_volume(restore)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(restored.content_source.is_some());
    assert_eq!(
        std::fs::read(
            c.f.root()
                .join("volumes")
                .join(&restored.volume_id)
                .join("f")
        )
        .unwrap(),
        b"snapshotted"
    );
    for _ in 0..2 {
        c.controller
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: s.snapshot_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let after = c
        .controller
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(after.entries.is_empty());
}

/// A hostpath host whose tracing goes to a file at `rust_log` (None: its
/// default level): the fixture, the host and the log's path.
fn start_logging(rust_log: Option<&str>) -> (Fixture, ServeProcess, std::path::PathBuf) {
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            csi: true,
            ..FixtureGrants::default()
        },
    );
    let log = f.dir.path().join("serve.log");
    let serve = ServeProcess::start_logging(&f, rust_log, &log);
    (f, serve, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_a_driver_without_the_grant_nor_any_log() {
    // At debug, so that every audit record and call also goes to tracing.
    let (f, serve, log) = start_logging(Some("debug"));
    let mut controller = ControllerClient::new(csi_channel(&serve.socket).await);
    let mut req = create_req("pvc-secret", MIB);
    req.secrets
        .insert("password".into(), "hunter2-do-not-log".into());
    controller.create_volume(req).await.unwrap();
    drop(controller);
    drop(serve);
    let audit = std::fs::read_to_string(f.dir.path().join("state/audit.jsonl")).unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(audit.contains("pvc-secret"));
    assert!(stderr.contains("pvc-secret"), "the call is in tracing too");
    assert!(!audit.contains("hunter2-do-not-log"));
    assert!(!stderr.contains("hunter2-do-not-log"));
}

/// At its default level `serve` prints what it serves and any denial, not
/// every allowed capability use: those are in the audit log file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_leaves_allowed_capability_uses_to_the_audit_file_by_default() {
    let (f, serve, log) = start_logging(None);
    let mut controller = ControllerClient::new(csi_channel(&serve.socket).await);
    controller
        .create_volume(create_req("pvc-quiet", MIB))
        .await
        .unwrap();
    drop(controller);
    drop(serve);
    let allowed = f
        .audit()
        .into_iter()
        .filter(|r| r["decision"] == "allow")
        .count();
    assert!(
        allowed >= 2,
        "the create and its capability uses: {allowed}"
    );
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("CSI socket ready"), "{stderr}");
    assert!(!stderr.contains("\"decision\":\"allow\""), "{stderr}");
}

/// logrotate moves the audit log away and sends SIGHUP: the host keeps
/// serving, and records from then on go to a new file at the configured path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reopens_a_rotated_audit_log() {
    let mut c = start().await;
    c.controller
        .create_volume(create_req("pvc-before", MIB))
        .await
        .unwrap();
    let log = c.f.dir.path().join("state/audit.jsonl");
    let rotated = c.f.dir.path().join("state/audit.jsonl.1");
    std::fs::rename(&log, &rotated).unwrap();
    c.serve.signal(nix::sys::signal::Signal::SIGHUP);
    // Reopening creates the file at the configured path.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !log.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no new audit log after SIGHUP"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    c.controller
        .create_volume(create_req("pvc-after", MIB))
        .await
        .unwrap();
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(
        old.contains("pvc-before") && !old.contains("pvc-after"),
        "{old}"
    );
    assert!(
        new.contains("pvc-after") && !new.contains("pvc-before"),
        "{new}"
    );
    c.identity.probe(ProbeRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_different_volumes_run_in_parallel() {
    // Proof of overlap: each of these creates succeeds only if the other
    // runs at the same time (the adversary waits up to 2 s for its partner's
    // marker); run one by one, the first would fail ABORTED.
    {
        let f = Fixture::new(
            "adversary",
            FixtureGrants {
                csi: true,
                device: true,
                ..FixtureGrants::default()
            },
        );
        let serve = ServeProcess::start(&f);
        let ctrl = ControllerClient::new(csi_channel(&serve.socket).await);
        let calls: Vec<_> = ["overlap-1", "overlap-2"]
            .into_iter()
            .map(|name| {
                let mut ctrl = ctrl.clone();
                tokio::spawn(async move { ctrl.create_volume(create_req(name, MIB)).await })
            })
            .collect();
        for call in calls {
            let v = call.await.unwrap().expect("both creates ran at once");
            assert!(v
                .into_inner()
                .volume
                .unwrap()
                .volume_id
                .starts_with("overlap-"));
        }
    }
    let mut c = start().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut ctrl = c.controller.clone();
        tasks.push(tokio::spawn(async move {
            ctrl.create_volume(create_req(&format!("pvc-par-{i}"), MIB))
                .await
                .map(|r| r.into_inner().volume.unwrap().volume_id)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().expect("parallel create"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    let listed = c
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_socket_does_not_stop_the_host() {
    use tokio::io::AsyncWriteExt;
    let mut c = start().await;
    let mut raw = tokio::net::UnixStream::connect(c.f.csi_socket())
        .await
        .unwrap();
    raw.write_all(b"this is not HTTP/2 at all\r\n\r\n\x00\x01\x02")
        .await
        .unwrap();
    drop(raw);
    let probe = c
        .identity
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));
    assert!(c.serve.alive());
}

#[test]
fn a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced() {
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            csi: true,
            ..FixtureGrants::default()
        },
    );
    // Stale: a socket file nobody serves.
    wasmvol_tests::stale_socket(&f.csi_socket());
    assert!(f.csi_socket().exists());
    let first = ServeProcess::start(&f);
    let mode = std::fs::metadata(f.csi_socket()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o660);
    // Live: a second host must refuse, naming the socket.
    let out = std::process::Command::new(wasmvol_tests::wasmvol_bin())
        .args(["serve", "--config"])
        .arg(&f.policy_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another process is serving this socket")
            && err.contains(&f.csi_socket().display().to_string()),
        "{err}"
    );
    drop(first);
    assert!(!f.csi_socket().exists(), "serve removes its socket on exit");
}

fn at_node(node: &str) -> Topology {
    Topology {
        segments: HashMap::from([(wasmvol::csi::topology::NODE_KEY.to_owned(), node.to_owned())]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_local_volumes_are_pinned_to_the_node_that_made_them() {
    let mut c = start().await;
    let caps = c.plugin_capabilities().await;
    use plugin_capability::{service, Type};
    assert!(caps.iter().any(|c| matches!(&c.r#type,
        Some(Type::Service(s)) if s.r#type == service::Type::VolumeAccessibilityConstraints as i32)));
    let info = c
        .node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let here = at_node(&info.node_id);
    assert_eq!(info.accessible_topology.as_ref(), Some(&here));

    let create = |name: &str, requisite: Vec<Topology>, preferred: Vec<Topology>| {
        let mut r = create_req(name, MIB);
        r.accessibility_requirements = Some(TopologyRequirement {
            requisite,
            preferred,
        });
        r
    };
    let v = c
        .controller
        .create_volume(create_req("plain", MIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.accessible_topology, vec![here.clone()]);
    let v = c
        .controller
        .create_volume(create(
            "listed",
            vec![at_node("elsewhere"), here.clone()],
            vec![here.clone()],
        ))
        .await
        .expect("this node is among the requisite ones")
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.accessible_topology, vec![here.clone()]);

    let volumes = || {
        std::fs::read_dir(c.f.root().join("volumes"))
            .unwrap()
            .count()
    };
    let made = volumes();
    let elsewhere = c
        .controller
        .create_volume(create("elsewhere", vec![at_node("elsewhere")], vec![]))
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), Code::ResourceExhausted, "{elsewhere:?}");
    assert!(elsewhere.message().contains(&info.node_id));
    let not_requisite = c
        .controller
        .create_volume(create(
            "odd",
            vec![here.clone()],
            vec![at_node("elsewhere")],
        ))
        .await
        .unwrap_err();
    assert_eq!(not_requisite.code(), Code::InvalidArgument);
    let zone = Topology {
        segments: HashMap::from([("topology.kubernetes.io/zone".into(), "z".into())]),
    };
    let unknown_key = c
        .controller
        .create_volume(create("zoned", vec![zone], vec![]))
        .await
        .unwrap_err();
    assert_eq!(unknown_key.code(), Code::InvalidArgument);
    assert_eq!(volumes(), made, "a refused create makes nothing");

    let capacity = |t: Option<Topology>| GetCapacityRequest {
        accessible_topology: t,
        ..Default::default()
    };
    let ours = c
        .controller
        .get_capacity(capacity(Some(here.clone())))
        .await
        .unwrap()
        .into_inner();
    assert!(ours.available_capacity > 0);
    let theirs = c
        .controller
        .get_capacity(capacity(Some(at_node("elsewhere"))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(theirs.available_capacity, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_single_writer_volume_is_published_at_one_target_only() {
    let mut c = start().await;
    let v = c.create("pvc-single", MIB).await;
    let single = mount_cap(volume_capability::access_mode::Mode::SingleNodeSingleWriter);
    let publish = |target: &Path| NodePublishVolumeRequest {
        volume_capability: Some(single.clone()),
        ..publish_req(&v.volume_id, target, false)
    };
    let (a, b) = (c.target("single-a"), c.target("single-b"));
    for _ in 0..2 {
        c.node
            .node_publish_volume(publish(&a))
            .await
            .expect("publish at a");
    }
    let second = c.node.node_publish_volume(publish(&b)).await.unwrap_err();
    assert_eq!(second.code(), Code::FailedPrecondition, "{second:?}");
    assert_eq!(
        mounts_under(c.f.dir.path()),
        vec![a.clone()],
        "nothing left at b"
    );
    assert!(
        !b.exists(),
        "the host made no target for the refused publish"
    );
    c.node
        .node_unpublish_volume(unpublish_req(&v.volume_id, &a))
        .await
        .unwrap();
    c.node
        .node_publish_volume(publish(&b))
        .await
        .expect("once unpublished at a, b may have it");
    c.node
        .node_unpublish_volume(unpublish_req(&v.volume_id, &b))
        .await
        .unwrap();
    assert!(mounts_under(c.f.dir.path()).is_empty());
}
