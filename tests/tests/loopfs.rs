//! Block volumes end to end: loopfs through CSI (a `wasmvol serve` process)
//! and through the FlexVolume shim, with real loop devices, mkfs and mounts;
//! host restarts mid-flow; and a hostile driver probing the device capability.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tonic::Code;
use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::*;
use wasmvol_tests::{csi_channel, loops_under, mounts_under, Fixture, FixtureGrants, ServeProcess};

const MIB: i64 = 1 << 20;

fn grants() -> FixtureGrants {
    FixtureGrants {
        csi: true,
        flex: true,
        device: true,
        deadline_ms: 60_000,
        ..FixtureGrants::default()
    }
}

struct Host {
    controller: ControllerClient<tonic::transport::Channel>,
    node: NodeClient<tonic::transport::Channel>,
    serve: ServeProcess,
}

async fn start(f: &Fixture) -> Host {
    let serve = ServeProcess::start(f);
    let ch = csi_channel(&serve.socket).await;
    Host {
        controller: ControllerClient::new(ch.clone()),
        node: NodeClient::new(ch),
        serve,
    }
}

fn cap(block: bool) -> VolumeCapability {
    cap_fs(block, "ext4")
}

fn cap_fs(block: bool, fs: &str) -> VolumeCapability {
    use volume_capability::AccessType;
    VolumeCapability {
        access_type: Some(if block {
            AccessType::Block(Default::default())
        } else {
            AccessType::Mount(volume_capability::MountVolume {
                fs_type: fs.into(),
                mount_flags: vec!["noatime".into()],
                volume_mount_group: String::new(),
            })
        }),
        access_mode: Some(volume_capability::AccessMode {
            mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

impl Host {
    async fn create(
        &mut self,
        name: &str,
        bytes: i64,
        source: Option<VolumeContentSource>,
    ) -> String {
        self.controller
            .create_volume(CreateVolumeRequest {
                name: name.into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: bytes,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![cap(false)],
                volume_content_source: source,
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner()
            .volume
            .unwrap()
            .volume_id
    }

    async fn stage(&mut self, id: &str, staging: &Path, block: bool) {
        self.node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: path_str(staging),
                volume_capability: Some(cap(block)),
                ..Default::default()
            })
            .await
            .expect("stage");
    }

    async fn unstage(&mut self, id: &str, staging: &Path) {
        self.node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: path_str(staging),
            })
            .await
            .expect("unstage");
    }

    async fn publish(&mut self, id: &str, staging: &Path, target: &Path, block: bool) {
        self.node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: id.into(),
                staging_target_path: path_str(staging),
                target_path: path_str(target),
                volume_capability: Some(cap(block)),
                ..Default::default()
            })
            .await
            .expect("publish");
    }

    async fn unpublish(&mut self, id: &str, target: &Path) {
        self.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.into(),
                target_path: path_str(target),
            })
            .await
            .expect("unpublish");
    }
}

fn dirs(f: &Fixture, name: &str) -> (PathBuf, PathBuf) {
    let base = f.dir.path().join("kubelet").join(name);
    std::fs::create_dir_all(&base).unwrap();
    (base.join("staging"), base.join("target"))
}

fn assert_clean(f: &Fixture) {
    assert!(
        mounts_under(f.dir.path()).is_empty(),
        "{:?}",
        mounts_under(f.dir.path())
    );
    assert!(
        loops_under(f.dir.path()).is_empty(),
        "{:?}",
        loops_under(f.dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_keeps_data_and_never_reformats() {
    let f = Fixture::new("loopfs", grants());
    let mut h = start(&f).await;
    let id = h.create("pvc-block", 64 * MIB, None).await;
    let (staging, target) = dirs(&f, "a");
    for _ in 0..2 {
        h.stage(&id, &staging, false).await;
    }
    assert_eq!(loops_under(f.dir.path()).len(), 1, "attached once");
    h.publish(&id, &staging, &target, false).await;
    // The filesystem on the device was written by the sandbox: the host
    // mounts it nosuid,nodev, and a device node on it does not open.
    for at in [&staging, &target] {
        let options = wasmvol_tests::mount_options(at);
        assert!(
            options.iter().any(|o| o == "nosuid") && options.iter().any(|o| o == "nodev"),
            "{}: {options:?}",
            at.display()
        );
    }
    assert!(!wasmvol_tests::device_node_opens(&target));
    std::fs::write(target.join("data"), b"on a real filesystem").unwrap();
    h.unpublish(&id, &target).await;
    h.unstage(&id, &staging).await;
    assert_clean(&f);
    // Stage again: the filesystem is found, not remade.
    h.stage(&id, &staging, false).await;
    h.publish(&id, &staging, &target, false).await;
    assert_eq!(
        std::fs::read(target.join("data")).unwrap(),
        b"on a real filesystem"
    );
    let stats = h
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: path_str(&target),
            staging_target_path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stats.usage[0].total > 50 * MIB && stats.usage[0].total <= 64 * MIB);
    h.unpublish(&id, &target).await;
    h.unstage(&id, &staging).await;
    h.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_clean(&f);
    assert!(h.serve.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_block_publish_reads_back_what_was_written() {
    let f = Fixture::new("loopfs", grants());
    let mut h = start(&f).await;
    let id = h.create("pvc-raw", 16 * MIB, None).await;
    let (staging, target) = dirs(&f, "raw");
    h.stage(&id, &staging, true).await;
    h.publish(&id, &staging, &target, true).await;
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&target)
        .unwrap()
        .file_type()
        .is_block_device());
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    {
        let mut dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&target)
            .unwrap();
        dev.seek(SeekFrom::Start(MIB as u64)).unwrap();
        dev.write_all(&pattern).unwrap();
        dev.sync_all().unwrap();
    }
    let mut back = vec![0u8; 4096];
    let mut dev = std::fs::File::open(&target).unwrap();
    dev.seek(SeekFrom::Start(MIB as u64)).unwrap();
    dev.read_exact(&mut back).unwrap();
    drop(dev);
    assert_eq!(back, pattern);
    // Expanded at the node with no capability in the request (it is
    // optional): the host passes the one the volume was published with, so
    // the driver knows there is no filesystem to grow.
    let grown = h
        .node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: path_str(&target),
            ..Default::default()
        })
        .await
        .expect("a raw block volume has nothing to grow at the node")
        .into_inner();
    assert_eq!(grown.capacity_bytes, 16 * MIB);
    h.unpublish(&id, &target).await;
    h.unstage(&id, &staging).await;
    assert_clean(&f);
    // The bytes went to the backing file.
    let mut img = std::fs::File::open(f.root().join("volumes").join(format!("{id}.img"))).unwrap();
    img.seek(SeekFrom::Start(MIB as u64)).unwrap();
    img.read_exact(&mut back).unwrap();
    assert_eq!(back, pattern);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_expansion_at_the_node_alone_grows_the_mounted_filesystem() {
    let f = Fixture::new("loopfs", grants());
    let mut h = start(&f).await;
    // xfs: growing ext4 online needs CAP_SYS_RESOURCE, which this sandbox's
    // root lacks; xfs grows online with CAP_SYS_ADMIN.
    let id = h
        .controller
        .create_volume(CreateVolumeRequest {
            name: "pvc-grow".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 320 * MIB,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![cap_fs(false, "xfs")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let (staging, target) = dirs(&f, "grow");
    for (call, result) in [
        (
            "stage",
            h.node
                .node_stage_volume(NodeStageVolumeRequest {
                    volume_id: id.clone(),
                    staging_target_path: path_str(&staging),
                    volume_capability: Some(cap_fs(false, "xfs")),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
        (
            "publish",
            h.node
                .node_publish_volume(NodePublishVolumeRequest {
                    volume_id: id.clone(),
                    staging_target_path: path_str(&staging),
                    target_path: path_str(&target),
                    volume_capability: Some(cap_fs(false, "xfs")),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        ),
    ] {
        result.unwrap_or_else(|e| panic!("{call}: {e}"));
    }
    // A node-local volume grows at its node only: the controller does not
    // advertise expansion (csi-resizer then only records the new size), the
    // node and the plugin do, and kubelet's NodeExpandVolume alone grows
    // the backing file and the filesystem on it.
    let controller_caps = h
        .controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let rpc = |t: &Option<controller_service_capability::Type>| match t {
        Some(controller_service_capability::Type::Rpc(r)) => r.r#type,
        None => 0,
    };
    let expand = controller_service_capability::rpc::Type::ExpandVolume as i32;
    assert!(controller_caps.iter().all(|c| rpc(&c.r#type) != expand));
    assert!(controller_caps
        .iter()
        .any(|c| rpc(&c.r#type)
            == controller_service_capability::rpc::Type::CreateDeleteVolume as i32));
    let node_caps = h
        .node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert!(node_caps.iter().any(|c| matches!(&c.r#type,
        Some(node_service_capability::Type::Rpc(r))
            if r.r#type == node_service_capability::rpc::Type::ExpandVolume as i32)));
    let before = nix::sys::statvfs::statvfs(&target).unwrap();
    let expand_at_node = || NodeExpandVolumeRequest {
        volume_id: id.clone(),
        volume_path: path_str(&target),
        capacity_range: Some(CapacityRange {
            required_bytes: 640 * MIB,
            limit_bytes: 0,
        }),
        volume_capability: Some(cap_fs(false, "xfs")),
        ..Default::default()
    };
    let n = h
        .node
        .node_expand_volume(expand_at_node())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.capacity_bytes, 640 * MIB);
    let after = nix::sys::statvfs::statvfs(&target).unwrap();
    let size = |s: &nix::sys::statvfs::Statvfs| s.blocks() * s.fragment_size();
    assert!(
        size(&after) > size(&before) + 250 * MIB as u64,
        "{} -> {}",
        size(&before),
        size(&after)
    );
    let img = f.root().join("volumes").join(format!("{id}.img"));
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 640 * MIB as u64);
    // kubelet's retry of the same expansion: the same answer, nothing grows twice.
    let again = h
        .node
        .node_expand_volume(expand_at_node())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.capacity_bytes, 640 * MIB);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 640 * MIB as u64);
    h.unpublish(&id, &target).await;
    h.unstage(&id, &staging).await;
    assert_clean(&f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_restored_from_a_snapshot_holds_the_data() {
    let f = Fixture::new("loopfs", grants());
    let mut h = start(&f).await;
    let id = h.create("pvc-snap", 32 * MIB, None).await;
    let (staging, target) = dirs(&f, "s1");
    h.stage(&id, &staging, false).await;
    h.publish(&id, &staging, &target, false).await;
    std::fs::write(target.join("before-snapshot"), b"kept").unwrap();
    h.unpublish(&id, &target).await;
    h.unstage(&id, &staging).await;
    let snap = h
        .controller
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: id.clone(),
            name: "snap-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    let restored = h
        .create(
            "pvc-restored",
            32 * MIB,
            Some(VolumeContentSource {
                r#type: Some(volume_content_source::Type::Snapshot(
                    volume_content_source::SnapshotSource {
                        snapshot_id: snap.snapshot_id,
                    },
                )),
            }),
        )
        .await;
    let (staging2, target2) = dirs(&f, "s2");
    h.stage(&restored, &staging2, false).await;
    h.publish(&restored, &staging2, &target2, false).await;
    assert_eq!(
        std::fs::read(target2.join("before-snapshot")).unwrap(),
        b"kept"
    );
    h.unpublish(&restored, &target2).await;
    h.unstage(&restored, &staging2).await;
    assert_clean(&f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_restart_mid_flow_finds_the_device_again() {
    let f = Fixture::new("loopfs", grants());
    let mut h = start(&f).await;
    let id = h.create("pvc-restart", 32 * MIB, None).await;
    let (staging, target) = dirs(&f, "r");
    h.stage(&id, &staging, false).await;
    // Killed between stage and publish.
    drop(h);
    let mut h = start(&f).await;
    h.publish(&id, &staging, &target, false).await;
    assert_eq!(loops_under(f.dir.path()).len(), 1, "nothing attached twice");
    std::fs::write(target.join("x"), b"1").unwrap();
    // Killed between publish and unpublish.
    drop(h);
    let mut h = start(&f).await;
    h.stage(&id, &staging, false).await;
    assert_eq!(loops_under(f.dir.path()).len(), 1);
    h.unpublish(&id, &target).await;
    h.unstage(&id, &staging).await;
    assert_clean(&f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csi_errors_for_block_volumes() {
    let f = Fixture::new("loopfs", grants());
    let mut h = start(&f).await;
    let id = h.create("pvc-err", 16 * MIB, None).await;
    let (staging, target) = dirs(&f, "e");
    // Publish before stage: the host says the volume is not staged there.
    let r = h
        .node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: path_str(&staging),
            target_path: path_str(&target),
            volume_capability: Some(cap(false)),
            ..Default::default()
        })
        .await;
    assert_eq!(r.unwrap_err().code(), Code::FailedPrecondition);
    h.stage(&id, &staging, false).await;
    // Staged with a different capability elsewhere: already exists.
    let other = f.dir.path().join("kubelet/e/other");
    let r = h
        .node
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: path_str(&other),
            volume_capability: Some(cap(false)),
            ..Default::default()
        })
        .await;
    assert_eq!(r.unwrap_err().code(), Code::AlreadyExists);
    h.unstage(&id, &staging).await;
    assert_clean(&f);
}

fn run_shim(shim: &Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(shim)
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{:?}: {e}", out))
}

#[test]
fn flex_attach_mountdevice_mount_and_back() {
    let f = Fixture::new("loopfs", grants());
    let shim = wasmvol_tests::install_flex_shim(&f);
    let _serve = ServeProcess::start_on(&f, &f.flex_socket());
    let opts = r#"{"kubernetes.io/fsType":"ext4","kubernetes.io/readwrite":"rw","kubernetes.io/pvOrVolumeName":"pv-loop"}"#;
    let init = run_shim(&shim, &["init"]);
    assert_eq!(init["capabilities"]["attach"], true);
    let a = run_shim(&shim, &["attach", opts, "node-1"]);
    assert_eq!(a["status"], "Success", "{a}");
    let device = a["device"].as_str().unwrap().to_owned();
    assert!(device.starts_with("/dev/loop"), "{device}");
    assert_eq!(
        run_shim(&shim, &["waitforattach", &device, opts])["device"],
        device.as_str()
    );
    assert_eq!(
        run_shim(&shim, &["isattached", opts, "node-1"])["attached"],
        true
    );
    let devdir = f
        .dir
        .path()
        .join("kubelet/plugins/kubernetes.io/flexvolume/wasmvol/loopfs/mounts/pv-loop");
    let poddir = f
        .dir
        .path()
        .join("kubelet/pods/uid/volumes/wasmvol~loopfs/pv-loop");
    std::fs::create_dir_all(&devdir).unwrap();
    std::fs::create_dir_all(&poddir).unwrap();
    let r = run_shim(
        &shim,
        &["mountdevice", devdir.to_str().unwrap(), &device, opts],
    );
    assert_eq!(r["status"], "Success", "{r}");
    let r = run_shim(&shim, &["mount", poddir.to_str().unwrap(), opts]);
    assert_eq!(r["status"], "Success", "{r}");
    std::fs::write(poddir.join("via-flex"), b"1").unwrap();
    assert!(devdir.join("via-flex").exists());
    for (args, what) in [
        (vec!["unmount", poddir.to_str().unwrap()], "unmount"),
        (
            vec!["unmountdevice", devdir.to_str().unwrap()],
            "unmountdevice",
        ),
        (vec!["detach", "pv-loop", "node-1"], "detach"),
    ] {
        let r = run_shim(&shim, &args);
        assert_eq!(r["status"], "Success", "{what}: {r}");
    }
    assert_eq!(
        run_shim(&shim, &["isattached", opts, "node-1"])["attached"],
        false
    );
    assert_clean(&f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_publish_knows_its_node_and_refuses_other_arguments_on_a_repeat() {
    let f = Fixture::new("loopfs", grants());
    let mut h = start(&f).await;
    let id = h.create("pvc-attach", 16 * MIB, None).await;
    let publish = |node: &str, readonly: bool| ControllerPublishVolumeRequest {
        volume_id: id.clone(),
        node_id: node.into(),
        volume_capability: Some(cap(false)),
        readonly,
        ..Default::default()
    };
    let unpublish = || ControllerUnpublishVolumeRequest {
        volume_id: id.clone(),
        node_id: "test-node".into(),
        ..Default::default()
    };
    // A node-local volume is reachable only from its own node.
    let elsewhere = h
        .controller
        .controller_publish_volume(publish("no-such-node", false))
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), tonic::Code::NotFound, "{elsewhere:?}");
    assert!(loops_under(f.dir.path()).is_empty(), "nothing attached");
    // Published twice alike: the same answer; then read-only: ALREADY_EXISTS.
    let first = h
        .controller
        .controller_publish_volume(publish("test-node", false))
        .await
        .expect("publish")
        .into_inner();
    let again = h
        .controller
        .controller_publish_volume(publish("test-node", false))
        .await
        .expect("publish again")
        .into_inner();
    assert_eq!(first.publish_context, again.publish_context);
    let readonly = h
        .controller
        .controller_publish_volume(publish("test-node", true))
        .await
        .unwrap_err();
    assert_eq!(readonly.code(), tonic::Code::AlreadyExists, "{readonly:?}");
    h.controller
        .controller_unpublish_volume(unpublish())
        .await
        .expect("unpublish");
    assert!(loops_under(f.dir.path()).is_empty(), "detached");
    // Unpublished, it may be published read-only.
    h.controller
        .controller_publish_volume(publish("test-node", true))
        .await
        .expect("read-only after unpublish");
    h.controller
        .controller_unpublish_volume(unpublish())
        .await
        .expect("unpublish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_snapshots_read_only_modification_and_conditions_on_loop_devices() {
    use wasmvol::csi::proto::group_controller_client::GroupControllerClient;
    let f = Fixture::new("loopfs", grants());
    let mut h = start(&f).await;
    let mut group = GroupControllerClient::new(csi_channel(&h.serve.socket).await);
    let mut ids = Vec::new();
    for n in ["a", "b"] {
        let id = h.create(&format!("pvc-g-{n}"), 32 * MIB, None).await;
        let (staging, target) = dirs(&f, &format!("g-{n}"));
        h.stage(&id, &staging, false).await;
        h.publish(&id, &staging, &target, false).await;
        std::fs::write(target.join("data"), format!("{n} before")).unwrap();
        h.unpublish(&id, &target).await;
        h.unstage(&id, &staging).await;
        ids.push(id);
    }
    let g = group
        .create_volume_group_snapshot(CreateVolumeGroupSnapshotRequest {
            name: "g".into(),
            source_volume_ids: ids.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group_snapshot
        .unwrap();
    assert_eq!(g.snapshots.len(), 2);
    assert!(g
        .snapshots
        .iter()
        .all(|s| s.group_snapshot_id == g.group_snapshot_id));
    let alone = h
        .controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: g.snapshots[0].snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(alone.code(), tonic::Code::InvalidArgument, "{alone:?}");

    // readOnly: the next publish is read-only, enforced by the kernel.
    h.controller
        .controller_modify_volume(ControllerModifyVolumeRequest {
            volume_id: ids[0].clone(),
            mutable_parameters: [("readOnly".to_string(), "true".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let (staging, target) = dirs(&f, "ro");
    h.stage(&ids[0], &staging, false).await;
    h.publish(&ids[0], &staging, &target, false).await;
    let e = std::fs::write(target.join("data"), b"after").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e:?}");
    h.unpublish(&ids[0], &target).await;
    h.unstage(&ids[0], &staging).await;

    // Each member restores the data of the moment the group was taken.
    for (i, (s, n)) in g.snapshots.iter().zip(["a", "b"]).enumerate() {
        let source = VolumeContentSource {
            r#type: Some(volume_content_source::Type::Snapshot(
                volume_content_source::SnapshotSource {
                    snapshot_id: s.snapshot_id.clone(),
                },
            )),
        };
        let restored = h
            .create(&format!("pvc-g-restored-{i}"), 32 * MIB, Some(source))
            .await;
        let (staging, target) = dirs(&f, &format!("r-{i}"));
        h.stage(&restored, &staging, false).await;
        h.publish(&restored, &staging, &target, false).await;
        assert_eq!(
            std::fs::read_to_string(target.join("data")).unwrap(),
            format!("{n} before")
        );
        h.unpublish(&restored, &target).await;
        h.unstage(&restored, &staging).await;
    }

    // A backing file gone from the root makes the volume abnormal.
    let condition = |h: &mut Host, id: &str| {
        let mut c = h.controller.clone();
        let req = ControllerGetVolumeRequest {
            volume_id: id.into(),
        };
        async move {
            c.controller_get_volume(req)
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap()
                .volume_condition
                .unwrap()
        }
    };
    assert!(!condition(&mut h, &ids[1]).await.abnormal);
    let file = f.root().join("volumes").join(format!("{}.img", ids[1]));
    let aside = f.root().join("aside.img");
    std::fs::rename(&file, &aside).unwrap();
    let c = condition(&mut h, &ids[1]).await;
    assert!(c.abnormal && c.message.contains("missing"), "{c:?}");
    std::fs::rename(&aside, &file).unwrap();
    assert!(!condition(&mut h, &ids[1]).await.abnormal);

    group
        .delete_volume_group_snapshot(DeleteVolumeGroupSnapshotRequest {
            group_snapshot_id: g.group_snapshot_id.clone(),
            snapshot_ids: g.snapshots.iter().map(|s| s.snapshot_id.clone()).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let gone = h
        .controller
        .get_snapshot(GetSnapshotRequest {
            snapshot_id: g.snapshots[0].snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    assert_eq!(
        std::fs::read_dir(f.root().join("snapshots"))
            .unwrap()
            .count(),
        0
    );
    assert_clean(&f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_single_writer_publishes_once_and_multi_writer_at_many_targets() {
    use volume_capability::access_mode::Mode;
    let f = Fixture::new("loopfs", grants());
    let mut h = start(&f).await;
    let with_mode = |mode: Mode| VolumeCapability {
        access_mode: Some(volume_capability::AccessMode { mode: mode as i32 }),
        ..cap(false)
    };
    for (name, mode, second) in [
        (
            "single",
            Mode::SingleNodeSingleWriter,
            Code::FailedPrecondition,
        ),
        ("multi", Mode::SingleNodeMultiWriter, Code::Ok),
    ] {
        let id = h.create(&format!("pvc-{name}"), 32 * MIB, None).await;
        let (staging, a) = dirs(&f, &format!("{name}-a"));
        let b = a.with_file_name("target-b");
        h.node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: id.clone(),
                staging_target_path: path_str(&staging),
                volume_capability: Some(with_mode(mode)),
                ..Default::default()
            })
            .await
            .expect("stage");
        let publish = |target: &Path| NodePublishVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: path_str(&staging),
            target_path: path_str(target),
            volume_capability: Some(with_mode(mode)),
            ..Default::default()
        };
        h.node
            .node_publish_volume(publish(&a))
            .await
            .expect("publish at a");
        let at_b = h.node.node_publish_volume(publish(&b)).await;
        assert_eq!(code_of(&at_b), second, "{name}: {at_b:?}");
        if second == Code::Ok {
            h.unpublish(&id, &b).await;
        } else {
            assert!(
                !b.exists(),
                "{name}: no target made for the refused publish"
            );
        }
        h.unpublish(&id, &a).await;
        h.unstage(&id, &staging).await;
    }
    assert_clean(&f);
}

fn code_of<T>(r: &Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}
