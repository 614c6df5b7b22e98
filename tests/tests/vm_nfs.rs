//! NFS end to end on a real kernel NFS server: the nfs driver through CSI
//! and through the installed Flex shim, and the netfs capability's refusals.
//!
//! Runs only inside the real-kernel test VM (`scripts/test-vm.sh`, built
//! with `--features vm`): this machine's kernel has no NFS. The VM's job
//! exports `/srv/nfs` to 127.0.0.1 (`scripts/vm/nfs-server.sh`) and names
//! `nfs.test` (127.0.0.1) and `outside.test` (127.0.0.9) in `/etc/hosts`.
//! Each test works in its own directory of the share.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tonic::Code;
use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::*;
use wasmvol_tests::real_kernel::{nfs_grants as grants, EXPORT};
use wasmvol_tests::{csi_channel, exec_flex_shim, mount_options, Fixture, ServeProcess};

/// The export the VM's NFS server serves, as its own directory.
// Fields drop in order: clients first, then the host, then the fixture.
struct Csi {
    controller: ControllerClient<tonic::transport::Channel>,
    node: NodeClient<tonic::transport::Channel>,
    _serve: ServeProcess,
    f: Fixture,
    /// This test's directory on the share, relative to the export.
    dir: String,
}

async fn start(dir: &str) -> Csi {
    let f = Fixture::new("nfs", grants(true, false));
    let serve = ServeProcess::start(&f);
    let channel = csi_channel(&serve.socket).await;
    let on_server = Path::new(EXPORT).join(dir);
    let _ = std::fs::remove_dir_all(&on_server);
    Csi {
        controller: ControllerClient::new(channel.clone()),
        node: NodeClient::new(channel),
        _serve: serve,
        f,
        dir: dir.into(),
    }
}

fn cap(flags: &[&str]) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume {
                fs_type: String::new(),
                mount_flags: flags.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )),
        access_mode: Some(volume_capability::AccessMode {
            mode: volume_capability::access_mode::Mode::SingleNodeMultiWriter as i32,
        }),
    }
}

impl Csi {
    fn params(&self, extra: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        let mut p: std::collections::HashMap<String, String> = [
            ("server", "nfs.test"),
            ("share", EXPORT),
            ("subDir", self.dir.as_str()),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        p.retain(|_, v| !v.is_empty());
        p
    }

    /// Where a path of this test's directory is on the server.
    fn on_server(&self, rel: &str) -> PathBuf {
        Path::new(EXPORT).join(&self.dir).join(rel)
    }

    async fn create(
        &mut self,
        name: &str,
        extra: &[(&str, &str)],
        source: Option<volume_content_source::Type>,
    ) -> Result<Volume, tonic::Status> {
        let req = CreateVolumeRequest {
            name: name.into(),
            volume_capabilities: vec![cap(&[])],
            parameters: self.params(extra),
            volume_content_source: source.map(|t| VolumeContentSource { r#type: Some(t) }),
            ..Default::default()
        };
        Ok(self
            .controller
            .create_volume(req)
            .await?
            .into_inner()
            .volume
            .expect("volume"))
    }

    async fn publish(
        &mut self,
        v: &Volume,
        target: &Path,
        readonly: bool,
        flags: &[&str],
    ) -> Result<(), tonic::Status> {
        self.publish_with(
            &v.volume_id,
            v.volume_context.clone(),
            target,
            readonly,
            flags,
        )
        .await
    }

    async fn publish_with(
        &mut self,
        volume_id: &str,
        context: std::collections::HashMap<String, String>,
        target: &Path,
        readonly: bool,
        flags: &[&str],
    ) -> Result<(), tonic::Status> {
        let req = NodePublishVolumeRequest {
            volume_id: volume_id.into(),
            target_path: target.display().to_string(),
            volume_capability: Some(cap(flags)),
            readonly,
            volume_context: context,
            ..Default::default()
        };
        self.node.node_publish_volume(req).await.map(|_| ())
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

    async fn delete(&mut self, volume_id: &str) {
        self.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: volume_id.into(),
                ..Default::default()
            })
            .await
            .expect("delete");
    }

    fn target(&self, name: &str) -> PathBuf {
        self.f.dir.path().join("targets").join(name)
    }

    /// The last audit record of `operation`.
    fn last_audit(&self, operation: &str) -> Value {
        self.f
            .audit()
            .into_iter()
            .rev()
            .find(|r| r["operation"] == operation)
            .unwrap_or_else(|| panic!("no audit record of {operation}"))
    }
}

/// The filesystem type mounted at `path` (mountinfo's fs type field).
fn fs_type(path: &Path) -> String {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    let line = info
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == path.to_str())
        .unwrap_or_else(|| panic!("nothing mounted at {}", path.display()));
    let after = line.split(" - ").nth(1).unwrap();
    after.split(' ').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_lives_on_the_share_through_csi_publish_snapshot_restore_clone_and_delete() {
    let mut c = start("lifecycle").await;
    let v = c.create("pvc-a", &[], None).await.expect("create");
    assert_eq!(v.volume_id, "nfs.test#/srv/nfs#lifecycle/pvc-a#delete#4.2");
    assert!(c.on_server("pvc-a").is_dir(), "no directory on the share");
    let again = c.create("pvc-a", &[], None).await.expect("create again");
    assert_eq!(again.volume_id, v.volume_id);

    // Published read-write with options: written through the target, read on the server.
    let t1 = c.target("pod-1");
    for _ in 0..2 {
        c.publish(&v, &t1, false, &["hard", "timeo=600", "noatime"])
            .await
            .expect("publish");
    }
    assert_eq!(fs_type(&t1), "nfs4");
    let opts = mount_options(&t1);
    for o in ["nosuid", "nodev", "noatime", "rw"] {
        assert!(opts.contains(&o.to_string()), "{o} missing from {opts:?}");
    }
    assert_eq!(c.f.mounts().iter().filter(|m| **m == t1).count(), 1);
    std::fs::write(t1.join("data"), b"through nfs").unwrap();
    assert_eq!(
        std::fs::read(c.on_server("pvc-a/data")).unwrap(),
        b"through nfs"
    );
    let record = c.last_audit("netfs.mount-onto");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["args"]["server"], "nfs.test");
    assert_eq!(record["args"]["address"], "127.0.0.1");
    assert_eq!(record["args"]["export"], EXPORT);
    assert_eq!(
        record["args"]["options"],
        json!(["hard", "timeo=600", "noatime"])
    );
    assert_eq!(record["args"]["flags"], json!(["nosuid", "nodev"]));

    // Read-only publish refuses writes.
    let t2 = c.target("pod-2");
    c.publish(&v, &t2, true, &[]).await.expect("publish ro");
    assert!(mount_options(&t2).contains(&"ro".to_string()));
    let denied = std::fs::write(t2.join("other"), b"x").unwrap_err();
    assert_eq!(denied.raw_os_error(), Some(libc::EROFS), "{denied}");
    assert_eq!(std::fs::read(t2.join("data")).unwrap(), b"through nfs");

    let stats = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: v.volume_id.clone(),
            volume_path: t1.display().to_string(),
            ..Default::default()
        })
        .await
        .expect("stats")
        .into_inner();
    assert!(stats.usage.iter().any(|u| u.total > 0), "{stats:?}");

    c.unpublish(&v.volume_id, &t1).await;
    c.unpublish(&v.volume_id, &t2).await;
    assert!(c.f.mounts().is_empty(), "{:?}", c.f.mounts());

    // Snapshot and restore; clone: copies on the same share.
    let snap = c
        .controller
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: v.volume_id.clone(),
            name: "snap-1".into(),
            ..Default::default()
        })
        .await
        .expect("snapshot")
        .into_inner()
        .snapshot
        .unwrap();
    assert!(snap.ready_to_use);
    assert_eq!(
        std::fs::read(c.on_server(".snapshots/snap-1/data")).unwrap(),
        b"through nfs"
    );
    std::fs::write(c.on_server("pvc-a/data"), b"changed after").unwrap();
    let restored = c
        .create(
            "pvc-b",
            &[],
            Some(volume_content_source::Type::Snapshot(
                volume_content_source::SnapshotSource {
                    snapshot_id: snap.snapshot_id.clone(),
                },
            )),
        )
        .await
        .expect("restore");
    assert_eq!(
        std::fs::read(c.on_server("pvc-b/data")).unwrap(),
        b"through nfs"
    );
    let t3 = c.target("pod-3");
    c.publish(&restored, &t3, false, &[])
        .await
        .expect("publish restored");
    assert_eq!(std::fs::read(t3.join("data")).unwrap(), b"through nfs");
    c.unpublish(&restored.volume_id, &t3).await;
    let clone = c
        .create(
            "pvc-c",
            &[],
            Some(volume_content_source::Type::Volume(
                volume_content_source::VolumeSource {
                    volume_id: v.volume_id.clone(),
                },
            )),
        )
        .await
        .expect("clone");
    assert_eq!(
        std::fs::read(c.on_server("pvc-c/data")).unwrap(),
        b"changed after"
    );

    c.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: snap.snapshot_id,
            ..Default::default()
        })
        .await
        .expect("delete snapshot");
    assert!(!c.on_server(".snapshots/snap-1").exists());
    for id in [&v.volume_id, &restored.volume_id, &clone.volume_id] {
        c.delete(id).await;
        c.delete(id).await;
    }
    for name in ["pvc-a", "pvc-b", "pvc-c"] {
        assert!(!c.on_server(name).exists(), "{name} left on the share");
    }
    assert!(c.f.mounts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_retains_archives_or_deletes_and_nfsv3_mounts_too() {
    let mut c = start("ondelete").await;
    let kept = c
        .create("pvc-keep", &[("onDelete", "retain")], None)
        .await
        .unwrap();
    let archived = c
        .create("pvc-old", &[("onDelete", "archive")], None)
        .await
        .unwrap();
    std::fs::write(c.on_server("pvc-old/data"), b"keep me").unwrap();
    c.delete(&kept.volume_id).await;
    c.delete(&archived.volume_id).await;
    assert!(c.on_server("pvc-keep").is_dir(), "retained volume removed");
    assert!(!c.on_server("pvc-old").exists());
    assert_eq!(
        std::fs::read(c.on_server("archived-pvc-old/data")).unwrap(),
        b"keep me"
    );

    // NFSv3 (the kernel's own mount protocol client; no mount.nfs helper).
    let v3 = c
        .create(
            "pvc-v3",
            &[("nfsvers", "3"), ("mountOptions", "nolock")],
            None,
        )
        .await
        .expect("create over v3");
    let t = c.target("pod-v3");
    c.publish(&v3, &t, false, &["nolock"])
        .await
        .expect("publish v3");
    assert_eq!(fs_type(&t), "nfs");
    std::fs::write(t.join("v3"), b"three").unwrap();
    assert_eq!(std::fs::read(c.on_server("pvc-v3/v3")).unwrap(), b"three");
    c.unpublish(&v3.volume_id, &t).await;
    c.delete(&v3.volume_id).await;
    assert!(!c.on_server("pvc-v3").exists());
    assert!(c.f.mounts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netfs_refuses_what_is_not_granted_audits_it_and_mounts_nothing() {
    let mut c = start("denials").await;
    let good = c.create("pvc-ok", &[], None).await.expect("create");
    let ctx = |server: &str, share: &str, subdir: &str| {
        [("server", server), ("share", share), ("subDir", subdir)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::HashMap<_, _>>()
    };
    let target = c.target("pod-x");
    struct Case {
        what: &'static str,
        server: &'static str,
        share: &'static str,
        subdir: &'static str,
        flags: &'static [&'static str],
        code: Code,
        says: &'static str,
    }
    let cases = [
        Case {
            what: "ungranted address",
            server: "127.0.0.2",
            share: EXPORT,
            subdir: "denials/pvc-ok",
            flags: &[],
            code: Code::PermissionDenied,
            says: "outside grants.netfs.servers",
        },
        Case {
            what: "ungranted name",
            server: "evil.example",
            share: EXPORT,
            subdir: "denials/pvc-ok",
            flags: &[],
            code: Code::PermissionDenied,
            says: "not in grants.netfs.servers",
        },
        Case {
            what: "name resolving outside",
            server: "outside.test",
            share: EXPORT,
            subdir: "denials/pvc-ok",
            flags: &[],
            code: Code::PermissionDenied,
            says: "127.0.0.9",
        },
        Case {
            what: "ungranted export",
            server: "nfs.test",
            share: "/etc",
            subdir: "",
            flags: &[],
            code: Code::PermissionDenied,
            says: "not within grants.netfs.exports",
        },
        Case {
            what: "subdir escape",
            server: "nfs.test",
            share: EXPORT,
            subdir: "../../etc",
            flags: &[],
            code: Code::InvalidArgument,
            says: "..",
        },
        Case {
            what: "comma in a value",
            server: "nfs.test",
            share: EXPORT,
            subdir: "denials/pvc-ok",
            flags: &["timeo=600,bind"],
            code: Code::PermissionDenied,
            says: "timeo",
        },
        Case {
            what: "vers=2",
            server: "nfs.test",
            share: EXPORT,
            subdir: "denials/pvc-ok",
            flags: &["vers=2"],
            code: Code::PermissionDenied,
            says: "version",
        },
        Case {
            what: "sec=none",
            server: "nfs.test",
            share: EXPORT,
            subdir: "denials/pvc-ok",
            flags: &["sec=none"],
            code: Code::PermissionDenied,
            says: "sec=sys",
        },
        Case {
            what: "bind",
            server: "nfs.test",
            share: EXPORT,
            subdir: "denials/pvc-ok",
            flags: &["bind"],
            code: Code::PermissionDenied,
            says: "not an NFS option",
        },
        Case {
            what: "ungranted option",
            server: "nfs.test",
            share: EXPORT,
            subdir: "denials/pvc-ok",
            flags: &["soft"],
            code: Code::PermissionDenied,
            says: "grants.netfs.options",
        },
    ];
    for case in &cases {
        let before = c.f.audit().len();
        let err = c
            .publish_with(
                "x",
                ctx(case.server, case.share, case.subdir),
                &target,
                false,
                case.flags,
            )
            .await
            .expect_err(case.what);
        assert_eq!(err.code(), case.code, "{}: {err:?}", case.what);
        assert!(
            err.message().contains(case.says),
            "{}: {}",
            case.what,
            err.message()
        );
        assert!(
            c.f.mounts().is_empty(),
            "{}: mounted {:?}",
            case.what,
            c.f.mounts()
        );
        let records = c.f.audit();
        let record = records[before..]
            .iter()
            .find(|r| r["operation"] == "netfs.mount-onto")
            .unwrap_or_else(|| panic!("{}: no netfs audit record", case.what));
        assert_eq!(record["args"]["server"], case.server, "{}", case.what);
        if case.code == Code::PermissionDenied {
            assert_eq!(record["decision"], "deny", "{}", case.what);
        }
    }
    // A controller call naming an ungranted server makes no directory anywhere.
    let err = c
        .create("pvc-elsewhere", &[("server", "127.0.0.2")], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(!c.on_server("pvc-elsewhere").exists());
    // And the host still serves: the granted volume publishes.
    c.publish(&good, &target, false, &[])
        .await
        .expect("a good publish");
    c.unpublish(&good.volume_id, &target).await;
    c.delete(&good.volume_id).await;
    assert!(c.f.mounts().is_empty());
}

#[test]
fn the_classic_k8s_nfs_flex_volume_mounts_through_the_installed_shim() {
    let f = Fixture::new("nfs", grants(false, true));
    let shim_path = wasmvol_tests::install_flex_shim(&f);
    assert!(
        shim_path.ends_with("k8s~nfs/nfs"),
        "{}",
        shim_path.display()
    );
    let _serve = ServeProcess::start_on(&f, &f.flex_socket());
    let on_server = Path::new(EXPORT).join("flex");
    std::fs::create_dir_all(&on_server).unwrap();

    let init = exec_flex_shim(&shim_path, &["init"]);
    assert_eq!(init["status"], "Success", "{init}");
    // The PV of every FlexVolume guide: fsType nfs, options server and share.
    let dir = f
        .dir
        .path()
        .join("pods/flex-nfs/volumes/k8s~nfs/pv-flex-nfs");
    std::fs::create_dir_all(&dir).unwrap();
    let options = json!({
        "kubernetes.io/fsType": "nfs",
        "kubernetes.io/readwrite": "rw",
        "kubernetes.io/pvOrVolumeName": "pv-flex-nfs",
        "server": "nfs.test",
        "share": EXPORT,
        "subDir": "flex",
    })
    .to_string();
    let dir_s = dir.display().to_string();
    let mounted = exec_flex_shim(&shim_path, &["mount", &dir_s, &options]);
    assert_eq!(mounted["status"], "Success", "{mounted}");
    assert_eq!(fs_type(&dir), "nfs4");
    std::fs::write(dir.join("from-pod"), b"flex").unwrap();
    assert_eq!(std::fs::read(on_server.join("from-pod")).unwrap(), b"flex");
    let unmounted = exec_flex_shim(&shim_path, &["unmount", &dir_s]);
    assert_eq!(unmounted["status"], "Success", "{unmounted}");
    assert!(f.mounts().is_empty(), "{:?}", f.mounts());
    std::fs::remove_dir_all(&on_server).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nfs_answers_every_row_of_the_spec_sweep_it_offers() {
    let f = Fixture::new("nfs", grants(true, false));
    let dir = "spec-sweep";
    let _ = std::fs::remove_dir_all(Path::new(EXPORT).join(dir));
    let profile = |mut p: wasmvol::conformance::Profile| {
        p.parameters = [("server", "nfs.test"), ("share", EXPORT), ("subDir", dir)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        // A directory on a share has no size of its own to compare.
        p.sizes_volumes = false;
        p
    };
    wasmvol_tests::spec_sweep::sweep(
        &f,
        profile,
        &[
            (
                "CreateVolume",
                "same name, incompatible size: ALREADY_EXISTS",
            ),
            ("ListVolumes", "every row"),
            ("ControllerModifyVolume", "every row"),
            ("ControllerPublishVolume", "every row"),
            ("GetSnapshot", "every row"),
            ("ListSnapshots", "every row"),
            ("CreateVolumeGroupSnapshot", "every row"),
            ("NodeExpandVolume", "every row"),
        ],
    )
    .await;
    // The sweep deleted what it made: no volume directory is left on the server.
    let left: Vec<_> = std::fs::read_dir(Path::new(EXPORT).join(dir))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| n == ".snapshots"),
        "left on the share: {left:?}"
    );
}

/// What the kill-point flow's directory on the share holds.
fn kill_flow_share(_: &Fixture) -> std::collections::BTreeSet<String> {
    wasmvol_tests::kill_matrix::walk(&Path::new(EXPORT).join("kill-points"))
}

/// The kill-point matrix (`wasmvol_tests::kill_matrix`) on an NFS volume
/// through CSI: the host killed at each point of create, publish,
/// unpublish and delete that may change state (see `Flow::changes_only`)
/// in turn, restarted, kubelet's retry replayed and
/// the flow finished; after each step the share holds what the
/// uninterrupted flow's held, and no mount is left.
#[test]
fn killed_at_every_point_that_changes_state_the_retry_finishes_it() {
    use wasmvol_tests::kill_matrix::{matrix, Flow, Step::*};
    let _ = std::fs::remove_dir_all(Path::new(EXPORT).join("kill-points"));
    let points = matrix(Flow {
        lists: false,
        parameters: &[
            ("server", "nfs.test"),
            ("share", EXPORT),
            ("subDir", "kill-points"),
        ],
        storage: kill_flow_share,
        changes_only: true,
        ..Flow::new(
            "nfs",
            grants(true, false),
            &[Create, Publish, Unpublish, Delete],
        )
    });
    eprintln!("nfs CSI: {points} kill points, all passed");
}

/// The share directory of the snapshot and clone kill-point flows.
const KILL_COPIES_DIR: &str = "kill-copies";

/// A kill-point flow through CSI of a volume in [`KILL_COPIES_DIR`], made
/// afresh before each run.
fn copies_flow(
    steps: &'static [wasmvol_tests::kill_matrix::Step],
) -> wasmvol_tests::kill_matrix::Flow {
    wasmvol_tests::kill_matrix::Flow {
        lists: false,
        parameters: &[
            ("server", "nfs.test"),
            ("share", EXPORT),
            ("subDir", KILL_COPIES_DIR),
        ],
        storage: |_| wasmvol_tests::kill_matrix::walk(&Path::new(EXPORT).join(KILL_COPIES_DIR)),
        changes_only: true,
        reset: || {
            let _ = std::fs::remove_dir_all(Path::new(EXPORT).join(KILL_COPIES_DIR));
        },
        ..wasmvol_tests::kill_matrix::Flow::new("nfs", grants(true, false), steps)
    }
}

/// The matrix on a snapshot of an NFS volume (a copy in `.snapshots` on
/// the share), a restore from it and their deletes, then on a clone (a
/// copy of its directory) and its delete: after each step the share holds
/// what the uninterrupted flow's held (names and sizes). One test, as the
/// two flows share [`KILL_COPIES_DIR`].
#[test]
fn killed_at_every_point_of_snapshot_restore_and_clone_the_retry_finishes_it() {
    use wasmvol_tests::kill_matrix::{matrix, Step::*, SNAPSHOT_AND_RESTORE};
    let snapshots = matrix(copies_flow(SNAPSHOT_AND_RESTORE));
    let clones = matrix(copies_flow(&[Create, Clone, DeleteClone, Delete]));
    let _ = std::fs::remove_dir_all(Path::new(EXPORT).join(KILL_COPIES_DIR));
    eprintln!("nfs CSI snapshot and restore: {snapshots} kill points; clone: {clones}; all passed");
}

/// The share directory the Flex kill-point flow mounts (Flex makes none).
const KILL_FLEX_DIR: &str = "/srv/nfs/kill-flex";

/// The matrix on the classic `k8s/nfs` Flex volume: init, mount and
/// unmount through the installed shim, the host killed at each point that
/// may change state, restarted, kubelet's call-out repeated and the flow
/// finished; nothing is left mounted and the share holds what it held.
#[test]
fn killed_at_every_point_of_the_flex_mount_that_changes_state_the_retry_finishes_it() {
    use wasmvol_tests::kill_matrix::{matrix, walk, Flow, Step::*};
    let points = matrix(Flow {
        lists: false,
        flex_options: &[
            ("kubernetes.io/fsType", "nfs"),
            ("server", "nfs.test"),
            ("share", EXPORT),
            ("subDir", "kill-flex"),
        ],
        storage: |_| walk(Path::new(KILL_FLEX_DIR)),
        changes_only: true,
        reset: || {
            let _ = std::fs::remove_dir_all(KILL_FLEX_DIR);
            std::fs::create_dir_all(KILL_FLEX_DIR).unwrap();
            std::fs::write(Path::new(KILL_FLEX_DIR).join("on-the-share"), b"kept").unwrap();
        },
        ..Flow::new(
            "nfs",
            grants(false, true),
            &[Flex("init"), Flex("mount"), Flex("unmount")],
        )
    });
    std::fs::remove_dir_all(KILL_FLEX_DIR).unwrap();
    eprintln!("nfs Flex: {points} kill points, all passed");
}
