//! LVM end to end on a real kernel's device-mapper: the lvm driver through
//! CSI (thick and thin, raw block, expansion, snapshots, restore, clone)
//! and through the installed Flex shim, and the lvm capability's refusals.
//!
//! Runs only inside the real-kernel test VM (`scripts/test-vm.sh`, built
//! with `--features vm`). The VM's job makes `kube_vg` (4 GiB) with thin
//! pools `pool0` (granted) and `pool1` (not), and `other_vg` (not granted)
//! (`scripts/vm/lvm-setup.sh`). Each test uses volume names of its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tonic::Code;
use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::*;
use wasmvol_tests::real_kernel::lvm_grants as grants;
use wasmvol_tests::{csi_channel, exec_flex_shim, Fixture, ServeProcess};

const MIB: i64 = 1 << 20;

/// `lvs` of a group: name → tags.
/// A logical volume's size in bytes, as lvs reports it.
fn lv_bytes(lv: &str) -> u64 {
    let out = Command::new("lvs")
        .args([
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "lv_size",
            lv,
        ])
        .env("DM_DISABLE_UDEV", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn lvs(vg: &str) -> HashMap<String, String> {
    let out = Command::new("lvs")
        .args([
            "--noheadings",
            "-o",
            "lv_name,lv_tags",
            "--separator",
            "|",
            vg,
        ])
        .env("DM_DISABLE_UDEV", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().split_once('|'))
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
        .collect()
}

// Fields drop in order: clients first, then the host, then the fixture.
struct Csi {
    controller: ControllerClient<tonic::transport::Channel>,
    node: NodeClient<tonic::transport::Channel>,
    serve: ServeProcess,
    f: Fixture,
}

async fn start() -> Csi {
    let f = Fixture::new("lvm", grants(true, false));
    let serve = ServeProcess::start(&f);
    let channel = csi_channel(&serve.socket).await;
    Csi {
        controller: ControllerClient::new(channel.clone()),
        node: NodeClient::new(channel),
        serve,
        f,
    }
}

fn mount_cap(fs: &str) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Mount(
            volume_capability::MountVolume {
                fs_type: fs.into(),
                ..Default::default()
            },
        )),
        access_mode: Some(volume_capability::AccessMode {
            mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
    }
}

fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(volume_capability::AccessType::Block(
            volume_capability::BlockVolume::default(),
        )),
        access_mode: Some(volume_capability::AccessMode {
            mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
    }
}

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Csi {
    /// Kills the host with SIGKILL (no cleanup of any kind) and starts a
    /// fresh one on the same policy, as a node's supervisor would.
    async fn kill_and_restart(&mut self) {
        self.serve.signal(nix::sys::signal::Signal::SIGKILL);
        while self.serve.alive() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.serve = ServeProcess::start(&self.f);
        let channel = csi_channel(&self.serve.socket).await;
        self.controller = ControllerClient::new(channel.clone());
        self.node = NodeClient::new(channel);
    }

    async fn create(
        &mut self,
        name: &str,
        bytes: i64,
        p: &[(&str, &str)],
        cap: VolumeCapability,
        source: Option<volume_content_source::Type>,
    ) -> Result<Volume, tonic::Status> {
        let req = CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![cap],
            parameters: params(p),
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

    async fn stage(
        &mut self,
        id: &str,
        staging: &Path,
        cap: VolumeCapability,
    ) -> Result<(), tonic::Status> {
        self.node
            .node_stage_volume(NodeStageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
                volume_capability: Some(cap),
                ..Default::default()
            })
            .await
            .map(|_| ())
    }

    async fn unstage(&mut self, id: &str, staging: &Path) {
        self.node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
            })
            .await
            .expect("unstage");
    }

    async fn publish(&mut self, id: &str, staging: &Path, target: &Path, cap: VolumeCapability) {
        self.node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.display().to_string(),
                target_path: target.display().to_string(),
                volume_capability: Some(cap),
                ..Default::default()
            })
            .await
            .expect("publish");
    }

    async fn unpublish(&mut self, id: &str, target: &Path) {
        self.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.into(),
                target_path: target.display().to_string(),
            })
            .await
            .expect("unpublish");
    }

    async fn delete(&mut self, id: &str) {
        self.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .expect("delete");
    }

    async fn capacity(&mut self) -> i64 {
        self.controller
            .get_capacity(GetCapacityRequest {
                parameters: params(&[("volumegroup", "kube_vg")]),
                ..Default::default()
            })
            .await
            .expect("capacity")
            .into_inner()
            .available_capacity
    }

    async fn snapshot(&mut self, source: &str, name: &str) -> String {
        self.controller
            .create_snapshot(CreateSnapshotRequest {
                source_volume_id: source.into(),
                name: name.into(),
                ..Default::default()
            })
            .await
            .expect("snapshot")
            .into_inner()
            .snapshot
            .unwrap()
            .snapshot_id
    }

    fn path(&self, name: &str) -> PathBuf {
        let p = self.f.dir.path().join("targets").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    fn last_audit(&self, operation: &str) -> Value {
        self.f
            .audit()
            .into_iter()
            .rev()
            .find(|r| r["operation"] == operation)
            .unwrap_or_else(|| panic!("no audit record of {operation}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thick_volume_keeps_its_data_across_stages_grows_online_and_snapshots() {
    let mut c = start().await;
    let free_before = c.capacity().await;
    let vg = [("volumegroup", "kube_vg")];
    let v = c
        .create("pvc-thick", 64 * MIB, &vg, mount_cap("ext4"), None)
        .await
        .expect("create");
    assert_eq!(v.volume_id, "kube_vg#pvc-thick");
    // Node-local: pinned to the node whose host made it.
    assert_eq!(
        v.accessible_topology[0].segments[wasmvol::csi::topology::NODE_KEY],
        c.node
            .node_get_info(NodeGetInfoRequest {})
            .await
            .unwrap()
            .into_inner()
            .node_id
    );
    let again = c
        .create("pvc-thick", 64 * MIB, &vg, mount_cap("ext4"), None)
        .await
        .unwrap();
    assert_eq!(again.volume_id, v.volume_id);
    assert_eq!(lvs("kube_vg")["pvc-thick"], "wasmvol.owner.lvm");
    assert_eq!(
        c.capacity().await,
        free_before - 64 * MIB,
        "capacity shrinks as volumes are made"
    );

    let (staging, target) = (c.path("staging"), c.path("pod"));
    for _ in 0..2 {
        c.stage(&v.volume_id, &staging, mount_cap("ext4"))
            .await
            .expect("stage");
    }
    c.publish(&v.volume_id, &staging, &target, mount_cap("ext4"))
        .await;
    std::fs::write(target.join("data"), b"on a logical volume").unwrap();
    c.unpublish(&v.volume_id, &target).await;
    c.unstage(&v.volume_id, &staging).await;
    assert!(c.f.mounts().is_empty(), "{:?}", c.f.mounts());
    // Staged again: never reformatted, the data is there.
    c.stage(&v.volume_id, &staging, mount_cap("ext4"))
        .await
        .expect("stage again");
    c.publish(&v.volume_id, &staging, &target, mount_cap("ext4"))
        .await;
    assert_eq!(
        std::fs::read(target.join("data")).unwrap(),
        b"on a logical volume"
    );

    // Online expansion, seen by the mounted filesystem.
    let before = nix::sys::statvfs::statvfs(&target).unwrap();
    // At the node alone, as on a cluster (csi-resizer only records the
    // size of a node-local volume): the host extends the logical volume,
    // then grows the filesystem.
    c.node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: v.volume_id.clone(),
            volume_path: target.display().to_string(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(mount_cap("ext4")),
            capacity_range: Some(CapacityRange {
                required_bytes: 128 * MIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("node expand");
    assert_eq!(lv_bytes("kube_vg/pvc-thick"), 128 * MIB as u64);
    let after = nix::sys::statvfs::statvfs(&target).unwrap();
    assert!(
        after.blocks() * after.fragment_size() > before.blocks() * before.fragment_size() * 3 / 2,
        "the filesystem did not grow"
    );

    // A copy-on-write snapshot of the thick volume.
    let snap = c.snapshot(&v.volume_id, "snap-thick").await;
    assert!(lvs("kube_vg").contains_key("snap-snap-thick"), "{snap}");
    std::fs::write(target.join("after-the-snapshot"), b"x").unwrap();

    // Restored from it: a thick copy holding the snapshot's bytes.
    use volume_content_source::{SnapshotSource, Type, VolumeSource};
    let restored = c
        .create(
            "pvc-thick-restored",
            128 * MIB,
            &vg,
            mount_cap("ext4"),
            Some(Type::Snapshot(SnapshotSource {
                snapshot_id: snap.clone(),
            })),
        )
        .await
        .expect("restore a thick snapshot");
    let (r_staging, r_target) = (c.path("restored-staging"), c.path("restored-pod"));
    c.stage(&restored.volume_id, &r_staging, mount_cap("ext4"))
        .await
        .expect("stage the restored volume");
    c.publish(
        &restored.volume_id,
        &r_staging,
        &r_target,
        mount_cap("ext4"),
    )
    .await;
    assert_eq!(
        std::fs::read(r_target.join("data")).unwrap(),
        b"on a logical volume"
    );
    assert!(
        !r_target.join("after-the-snapshot").exists(),
        "the restore holds the snapshot, not the volume as it is now"
    );
    c.unpublish(&restored.volume_id, &r_target).await;
    c.unstage(&restored.volume_id, &r_staging).await;

    // A clone of a volume in use would be torn: refused, nothing made.
    let of_volume = || {
        Some(Type::Volume(VolumeSource {
            volume_id: v.volume_id.clone(),
        }))
    };
    let name = "pvc-thick-clone";
    let busy = c
        .create(name, 128 * MIB, &vg, mount_cap("ext4"), of_volume())
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
    let listed = lvs("kube_vg");
    assert!(
        !listed
            .keys()
            .any(|n| n == "pvc-thick-clone" || n.starts_with("wasmvol-copy-")),
        "{listed:?}"
    );

    c.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: snap,
            ..Default::default()
        })
        .await
        .expect("delete snapshot");
    c.unpublish(&v.volume_id, &target).await;
    c.unstage(&v.volume_id, &staging).await;
    // Not in use any more: the clone is made, with the volume's data now.
    let cloned = c
        .create(name, 128 * MIB, &vg, mount_cap("ext4"), of_volume())
        .await
        .expect("clone a thick volume");
    c.stage(&cloned.volume_id, &r_staging, mount_cap("ext4"))
        .await
        .expect("stage the clone");
    assert!(r_staging.join("after-the-snapshot").exists());
    c.unstage(&cloned.volume_id, &r_staging).await;
    c.delete(&cloned.volume_id).await;
    c.delete(&restored.volume_id).await;
    for _ in 0..2 {
        c.delete(&v.volume_id).await;
    }
    let left = lvs("kube_vg");
    assert!(
        !left.contains_key("pvc-thick") && !left.contains_key("snap-snap-thick"),
        "{left:?}"
    );
    assert_eq!(c.capacity().await, free_before);
    assert!(c.f.mounts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thin_volumes_snapshot_restore_clone_and_raw_block_reads_back() {
    let mut c = start().await;
    let thin = [("volumegroup", "kube_vg"), ("thinpool", "pool0")];
    let v = c
        .create("pvc-thin", 64 * MIB, &thin, mount_cap("ext4"), None)
        .await
        .expect("create thin");
    let (staging, target) = (c.path("staging-thin"), c.path("pod-thin"));
    c.stage(&v.volume_id, &staging, mount_cap("ext4"))
        .await
        .expect("stage");
    c.publish(&v.volume_id, &staging, &target, mount_cap("ext4"))
        .await;
    std::fs::write(target.join("data"), b"thin data").unwrap();
    nix::unistd::sync();
    let snap = c.snapshot(&v.volume_id, "snap-thin").await;
    std::fs::write(target.join("data"), b"changed").unwrap();
    c.unpublish(&v.volume_id, &target).await;
    c.unstage(&v.volume_id, &staging).await;

    let restored = c
        .create(
            "pvc-restored",
            64 * MIB,
            &thin,
            mount_cap("ext4"),
            Some(volume_content_source::Type::Snapshot(
                volume_content_source::SnapshotSource {
                    snapshot_id: snap.clone(),
                },
            )),
        )
        .await
        .expect("restore");
    let clone = c
        .create(
            "pvc-clone",
            64 * MIB,
            &thin,
            mount_cap("ext4"),
            Some(volume_content_source::Type::Volume(
                volume_content_source::VolumeSource {
                    volume_id: v.volume_id.clone(),
                },
            )),
        )
        .await
        .expect("clone");
    for (vol, want) in [(&restored, &b"thin data"[..]), (&clone, &b"changed"[..])] {
        let (s, t) = (
            c.path(&format!("s-{}", vol.volume_id)),
            c.path(&format!("t-{}", vol.volume_id)),
        );
        c.stage(&vol.volume_id, &s, mount_cap("ext4"))
            .await
            .expect("stage copy");
        c.publish(&vol.volume_id, &s, &t, mount_cap("ext4")).await;
        assert_eq!(
            std::fs::read(t.join("data")).unwrap(),
            want,
            "{}",
            vol.volume_id
        );
        c.unpublish(&vol.volume_id, &t).await;
        c.unstage(&vol.volume_id, &s).await;
    }

    // Raw block: the device node bound onto a file target reads back what was written.
    let raw = c
        .create("pvc-raw", 16 * MIB, &thin, block_cap(), None)
        .await
        .expect("create raw");
    let (rs, rt) = (c.path("staging-raw"), c.path("pod-raw"));
    c.stage(&raw.volume_id, &rs, block_cap())
        .await
        .expect("stage raw");
    c.publish(&raw.volume_id, &rs, &rt, block_cap()).await;
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&rt)
            .unwrap();
        dev.seek(SeekFrom::Start(4096)).unwrap();
        dev.write_all(b"raw block bytes").unwrap();
        dev.sync_all().unwrap();
        let mut back = [0u8; 15];
        dev.seek(SeekFrom::Start(4096)).unwrap();
        dev.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"raw block bytes");
    }
    c.unpublish(&raw.volume_id, &rt).await;
    c.unstage(&raw.volume_id, &rs).await;

    for id in [
        &raw.volume_id,
        &restored.volume_id,
        &clone.volume_id,
        &snap,
        &v.volume_id,
    ] {
        c.delete(id).await;
    }
    let left = lvs("kube_vg");
    for name in [
        "pvc-thin",
        "pvc-restored",
        "pvc-clone",
        "pvc-raw",
        "snap-snap-thin",
    ] {
        assert!(!left.contains_key(name), "{name} left: {left:?}");
    }
    assert!(c.f.mounts().is_empty(), "{:?}", c.f.mounts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lvm_refuses_ungranted_groups_pools_foreign_volumes_bad_names_and_sizes() {
    let mut c = start().await;
    // A volume no driver made through wasmvol (no owner tag).
    let made = Command::new("lvcreate")
        .args(["-q", "-y", "-L", "16M", "-n", "foreign", "kube_vg"])
        .env("DM_DISABLE_UDEV", "1")
        .status()
        .unwrap();
    assert!(made.success());
    let before = lvs("kube_vg");

    /// A refused create: its name, parameters, size, code and what its message says.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        i64,
        Code,
        &'static str,
    );
    let cases: [Case; 5] = [
        (
            "pvc-other-vg",
            &[("volumegroup", "other_vg")],
            16 * MIB,
            Code::PermissionDenied,
            "not in grants.lvm.groups",
        ),
        (
            "pvc-pool1",
            &[("volumegroup", "kube_vg"), ("thinpool", "pool1")],
            16 * MIB,
            Code::PermissionDenied,
            "thin pool",
        ),
        (
            "pvc-over-cap",
            &[("volumegroup", "kube_vg")],
            9 << 30,
            Code::PermissionDenied,
            "max_bytes",
        ),
        (
            "pvc-exhausted",
            &[("volumegroup", "kube_vg")],
            5 << 30,
            Code::ResourceExhausted,
            "free",
        ),
        (
            "pvc-bad-vg",
            &[("volumegroup", "--help")],
            16 * MIB,
            Code::PermissionDenied,
            "not in grants.lvm.groups",
        ),
    ];
    for (name, p, bytes, code, says) in cases {
        let err = c
            .create(name, bytes, p, mount_cap("ext4"), None)
            .await
            .expect_err(name);
        assert_eq!(err.code(), code, "{name}: {err:?}");
        assert!(err.message().contains(says), "{name}: {}", err.message());
        // The first lvm use of the create is the one refused (a listing of
        // the group, or the create itself).
        let record =
            c.f.audit()
                .into_iter()
                .rev()
                .find(|r| {
                    r["operation"]
                        .as_str()
                        .is_some_and(|o| o.starts_with("lvm."))
                })
                .expect("an lvm audit record");
        assert_eq!(record["args"]["group"], p[0].1, "{name}");
        if code == Code::PermissionDenied {
            assert_eq!(record["decision"], "deny", "{name}");
        }
    }
    // Another driver's (or nobody's) volume is invisible to this one: not
    // found to stage, refused to remove, and left as it was.
    let staging = c.path("staging-foreign");
    let err = c
        .stage("kube_vg#foreign", &staging, mount_cap("ext4"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c
        .controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: "kube_vg#foreign".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("not this driver's"),
        "{}",
        err.message()
    );
    assert_eq!(c.last_audit("lvm.remove")["decision"], "deny");
    // Made behind the host's back after it listed the group (its listing
    // is warm): another driver's tag, and one a tag match by prefix would
    // take for this driver's. The group's commit counter moved, so the
    // host lists again and refuses both.
    for (name, tag) in [
        ("late-other", "wasmvol.owner.other"),
        ("late-lookalike", "wasmvol.owner.lvm2"),
    ] {
        let made = Command::new("lvcreate")
            .args([
                "-q", "-y", "-L", "8M", "-n", name, "--addtag", tag, "kube_vg",
            ])
            .env("DM_DISABLE_UDEV", "1")
            .status()
            .unwrap();
        assert!(made.success());
        let id = format!("kube_vg#{name}");
        let err = c
            .controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{name}: {err:?}");
        let err = c
            .create(
                name,
                8 * MIB,
                &[("volumegroup", "kube_vg")],
                mount_cap("ext4"),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{name}: {err:?}");
        assert_eq!(lvs("kube_vg")[name], tag, "left as it was");
        lvremove(&format!("kube_vg/{name}"));
    }
    // Names that try to be options or paths never reach LVM.
    for id in [
        "kube_vg#--help",
        "kube_vg#-n",
        "kube_vg#a b",
        "kube_vg#x/../y",
    ] {
        let err = c.stage(id, &staging, mount_cap("ext4")).await.unwrap_err();
        assert!(
            matches!(err.code(), Code::InvalidArgument | Code::NotFound),
            "{id}: {err:?}"
        );
    }
    // Other tests make volumes in the same group meanwhile: check ours only.
    let after = lvs("kube_vg");
    assert_eq!(
        after.get("foreign"),
        before.get("foreign"),
        "the foreign volume changed"
    );
    for name in [
        "pvc-other-vg",
        "pvc-pool1",
        "pvc-over-cap",
        "pvc-exhausted",
        "pvc-bad-vg",
        "--help",
        "-n",
    ] {
        assert!(!after.contains_key(name), "{name} was made: {after:?}");
    }
    assert!(lvs("other_vg").is_empty());
    assert!(c.f.mounts().is_empty(), "{:?}", c.f.mounts());
    // And the host still serves.
    let ok = c
        .create(
            "pvc-after",
            16 * MIB,
            &[("volumegroup", "kube_vg")],
            mount_cap("ext4"),
            None,
        )
        .await
        .expect("a good create");
    c.delete(&ok.volume_id).await;
    lvremove("kube_vg/foreign");
}

#[test]
fn the_classic_kubernetes_io_lvm_flex_volume_is_made_on_first_mount_and_keeps_its_data() {
    let f = Fixture::new("lvm", grants(false, true));
    let shim_path = wasmvol_tests::install_flex_shim(&f);
    assert!(
        shim_path.ends_with("kubernetes.io~lvm/lvm"),
        "{}",
        shim_path.display()
    );
    let _serve = ServeProcess::start_on(&f, &f.flex_socket());
    // The pod volume of every FlexVolume guide.
    let options = json!({
        "kubernetes.io/fsType": "ext4",
        "kubernetes.io/readwrite": "rw",
        "kubernetes.io/pvOrVolumeName": "test",
        "volumeID": "vol1",
        "size": "64m",
        "volumegroup": "kube_vg",
    })
    .to_string();
    let dir = f
        .dir
        .path()
        .join("pods/lvm-pod/volumes/kubernetes.io~lvm/test");
    std::fs::create_dir_all(&dir).unwrap();
    let dir_s = dir.display().to_string();
    let mounted = exec_flex_shim(&shim_path, &["mount", &dir_s, &options]);
    assert_eq!(mounted["status"], "Success", "{mounted}");
    assert_eq!(lvs("kube_vg")["vol1"], "wasmvol.owner.lvm");
    assert_eq!(
        lv_bytes("kube_vg/vol1"),
        64 << 20,
        "made at the `size` option"
    );
    std::fs::write(dir.join("from-pod"), b"flex lvm").unwrap();
    let unmounted = exec_flex_shim(&shim_path, &["unmount", &dir_s]);
    assert_eq!(unmounted["status"], "Success", "{unmounted}");
    assert!(f.mounts().is_empty(), "{:?}", f.mounts());
    // Mounted again: the same volume, not a new one, and its data.
    let again = exec_flex_shim(&shim_path, &["mount", &dir_s, &options]);
    assert_eq!(again["status"], "Success", "{again}");
    assert_eq!(std::fs::read(dir.join("from-pod")).unwrap(), b"flex lvm");
    assert_eq!(
        exec_flex_shim(&shim_path, &["unmount", &dir_s])["status"],
        "Success"
    );
    assert!(f.mounts().is_empty(), "{:?}", f.mounts());
    lvremove("kube_vg/vol1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_during_create_and_between_stage_and_publish_picks_up_where_it_was() {
    let mut c = start().await;
    let vg = [("volumegroup", "kube_vg")];
    let name = "pvc-crash";

    // Killed during CreateVolume: once lvcreate has committed the volume,
    // before the host has answered.
    let mut controller = c.controller.clone();
    let pending = tokio::spawn(async move {
        controller
            .create_volume(CreateVolumeRequest {
                name: name.into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 64 * MIB,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![mount_cap("ext4")],
                parameters: params(&[("volumegroup", "kube_vg")]),
                ..Default::default()
            })
            .await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !lvs("kube_vg").contains_key(name) {
        assert!(std::time::Instant::now() < deadline, "lvcreate never ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    c.kill_and_restart().await;
    let _ = pending.await;
    // The retry kubelet's provisioner makes finds the volume: one volume,
    // still this driver's, not a second one.
    let v = c
        .create(name, 64 * MIB, &vg, mount_cap("ext4"), None)
        .await
        .expect("create after the restart");
    assert_eq!(v.volume_id, "kube_vg#pvc-crash");
    assert_eq!(v.capacity_bytes, 64 * MIB);
    let listed = lvs("kube_vg");
    assert_eq!(listed[name], "wasmvol.owner.lvm");
    assert_eq!(
        listed.keys().filter(|n| n.starts_with(name)).count(),
        1,
        "{listed:?}"
    );

    // Killed between stage and publish: the staged mount outlives the host
    // (it is the node's), and the new host publishes from it.
    let (staging, target) = (c.path("crash-staging"), c.path("crash-pod"));
    c.stage(&v.volume_id, &staging, mount_cap("ext4"))
        .await
        .expect("stage");
    std::fs::write(staging.join("before-the-crash"), b"kept").unwrap();
    c.kill_and_restart().await;
    c.stage(&v.volume_id, &staging, mount_cap("ext4"))
        .await
        .expect("stage again after the restart: already staged is success");
    assert_eq!(
        c.f.mounts().iter().filter(|m| **m == staging).count(),
        1,
        "staged once, not stacked: {:?}",
        c.f.mounts()
    );
    c.publish(&v.volume_id, &staging, &target, mount_cap("ext4"))
        .await;
    assert_eq!(
        std::fs::read(target.join("before-the-crash")).unwrap(),
        b"kept"
    );
    c.unpublish(&v.volume_id, &target).await;
    c.unstage(&v.volume_id, &staging).await;
    assert!(c.f.mounts().is_empty(), "{:?}", c.f.mounts());
    c.delete(&v.volume_id).await;
    assert!(
        !lvs("kube_vg").keys().any(|n| n.starts_with(name)),
        "no volume left behind"
    );
}

/// `vgs` of kube_vg's commit counter and id.
fn vgs_commit() -> (u64, String) {
    let out = Command::new("vgs")
        .args(["--noheadings", "-o", "vg_seqno,vg_uuid", "kube_vg"])
        .env("DM_DISABLE_UDEV", "1")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut f = text.split_whitespace();
    (
        f.next().unwrap().parse().unwrap(),
        f.next().unwrap().to_owned(),
    )
}

#[test]
fn the_commit_counter_the_host_reads_from_disk_is_lvms_own() {
    use wasmvol::sys::lvm::{physical_volumes, VgName};
    use wasmvol::sys::lvm_metadata::MetadataArea;
    let vg = VgName::parse("kube_vg").unwrap();
    let pvs = physical_volumes(&vg).unwrap();
    assert_eq!(pvs.len(), 1, "{pvs:?}");
    let area = MetadataArea::find(&pvs[0]).unwrap();
    let read = || {
        let c = area.commit(&vg).unwrap();
        (c.seqno, c.id)
    };
    let before = vgs_commit();
    assert_eq!(read(), before);
    let lv = |args: &[&str]| {
        assert!(Command::new(args[0])
            .args(&args[1..])
            .env("DM_DISABLE_UDEV", "1")
            .status()
            .unwrap()
            .success())
    };
    lv(&[
        "lvcreate",
        "-q",
        "-y",
        "-L",
        "8M",
        "-n",
        "seqno-probe",
        "kube_vg",
    ]);
    let made = vgs_commit();
    assert!(made.0 > before.0);
    assert_eq!(read(), made);
    lv(&["lvremove", "-q", "-y", "kube_vg/seqno-probe"]);
    assert_eq!(read(), vgs_commit());
    assert!(area.commit(&VgName::parse("other_vg").unwrap()).is_err());
}

#[test]
fn the_hosts_own_changes_keep_its_listing_and_anyone_elses_force_a_new_one() {
    use wasmvol::sys::fstools::runs;
    use wasmvol::sys::lvm::{self, Layout, LvName, VgName};
    use wasmvol::sys::lvm_groups::GroupCache;
    let vg = VgName::parse("kube_vg").unwrap();
    let lv = LvName::parse("cache-probe").unwrap();
    let cache = GroupCache::default();
    cache.with(&vg, |known| known.volumes().map(|_| ()).unwrap());
    let listed = |known: &mut wasmvol::sys::lvm_groups::Known| {
        let before = runs();
        let names: Vec<String> = known
            .volumes()
            .unwrap()
            .iter()
            .map(|v| v.name.clone())
            .collect();
        (names, runs() - before)
    };
    cache.with(&vg, |known| {
        assert_eq!(listed(known).1, 0, "a current listing costs no tool");
        lvm::create(&vg, &lv, 8 << 20, &Layout::Thick, "t").unwrap();
        assert_eq!(
            lvm::size_of(&lvm::node(&vg, &lv)).unwrap(),
            8 << 20,
            "the new volume's node is there at once"
        );
        known.changed(1, |volumes| {
            volumes.push(lvm::LogicalVolume {
                name: lv.as_str().into(),
                size: 8 << 20,
                pool: None,
                origin: None,
                tags: vec!["t".into()],
            });
            true
        });
        let (names, tools) = listed(known);
        assert!(names.contains(&"cache-probe".to_string()));
        assert_eq!(tools, 0, "the host's own create is folded in");
        lvm::remove(&vg, &lv).unwrap();
        known.changed(1, |volumes| {
            volumes.retain(|v| v.name != lv.as_str());
            true
        });
        let (names, tools) = listed(known);
        assert!(!names.contains(&"cache-probe".to_string()));
        assert_eq!(tools, 0, "the host's own remove is folded in");
    });
    // Someone else's change: listed again, and seen.
    assert!(Command::new("lvcreate")
        .args(["-q", "-y", "-L", "8M", "-n", "cache-probe", "kube_vg"])
        .env("DM_DISABLE_UDEV", "1")
        .status()
        .unwrap()
        .success());
    cache.with(&vg, |known| {
        let (names, tools) = listed(known);
        assert!(names.contains(&"cache-probe".to_string()));
        assert_eq!(tools, 1, "one lvs");
    });
    lvm::remove(&vg, &lv).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lvm_answers_every_row_of_the_spec_sweep_it_offers() {
    let f = Fixture::new("lvm", grants(true, false));
    let before = lvs("kube_vg");
    let profile = |mut p: wasmvol::conformance::Profile| {
        p.parameters = params(&[("volumegroup", "kube_vg")]);
        p.fs_type = "ext4".into();
        p
    };
    wasmvol_tests::spec_sweep::sweep(
        &f,
        profile,
        &[
            ("ListVolumes", "every row"),
            (
                "ControllerGetVolume",
                "volume_condition is set with VOLUME_CONDITION",
            ),
            ("ControllerModifyVolume", "every row"),
            ("ControllerPublishVolume", "every row"),
            ("GetSnapshot", "every row"),
            ("ListSnapshots", "every row"),
            ("CreateVolumeGroupSnapshot", "every row"),
            (
                "NodeGetVolumeStats",
                "volume_condition is set with VOLUME_CONDITION",
            ),
            (
                "NodePublishVolume",
                "SINGLE_NODE_SINGLE_WRITER, a second target: FAILED_PRECONDITION",
            ),
        ],
    )
    .await;
    // The sweep deleted every logical volume it made.
    assert_eq!(lvs("kube_vg"), before);
}

/// The logical volumes of the kill-point flows in `kube_vg`: their volume
/// (`pv-kill`), its restore and clone (`pv-kill-*`) and its snapshot
/// (`snap-snap-kill`), each with its tags and size.
fn kill_flow_lvs(_: &Fixture) -> std::collections::BTreeSet<String> {
    lvs("kube_vg")
        .into_iter()
        .filter(|(name, _)| name.contains("pv-kill") || name.contains("snap-kill"))
        .map(|(name, tags)| format!("{name} {tags} {}", lv_bytes(&format!("kube_vg/{name}"))))
        .collect()
}

/// A kill-point flow of a thick logical volume through CSI.
fn kill_flow(
    steps: &'static [wasmvol_tests::kill_matrix::Step],
) -> wasmvol_tests::kill_matrix::Flow {
    kill_flow_with(&[("volumegroup", "kube_vg")], steps)
}

/// A kill-point flow through CSI of a volume made with `parameters`.
fn kill_flow_with(
    parameters: &'static [(&'static str, &'static str)],
    steps: &'static [wasmvol_tests::kill_matrix::Step],
) -> wasmvol_tests::kill_matrix::Flow {
    wasmvol_tests::kill_matrix::Flow {
        lists: false,
        parameters,
        storage: kill_flow_lvs,
        changes_only: true,
        ..wasmvol_tests::kill_matrix::Flow::new("lvm", grants(true, false), steps)
    }
}

/// The kill-point matrix (`wasmvol_tests::kill_matrix`) on a thick logical
/// volume through CSI: the host killed at each point of create, stage,
/// publish, online expansion (lvextend, then resize2fs), unpublish, unstage
/// and delete that may change state (under emulation a restart is costly;
/// see `Flow::changes_only`) in turn, restarted, kubelet's retry replayed
/// and the flow finished; after each step the group holds what the
/// uninterrupted flow's held (names, tags, sizes), and nothing is left at
/// the end.
#[test]
fn killed_at_every_point_that_changes_state_the_retry_finishes_it() {
    use wasmvol_tests::kill_matrix::{matrix, Step::*};
    let points = matrix(kill_flow(&[
        Create, Stage, Publish, Expand, Unpublish, Unstage, Delete,
    ]));
    eprintln!("lvm CSI: {points} kill points, all passed");
}

/// The matrix on a thick volume's snapshot (a copy-on-write logical
/// volume), a restore from it (a thick copy) and their deletes.
#[test]
fn killed_at_every_point_of_snapshot_and_restore_the_retry_finishes_it() {
    use wasmvol_tests::kill_matrix::{matrix, SNAPSHOT_AND_RESTORE};
    let points = matrix(kill_flow(SNAPSHOT_AND_RESTORE));
    eprintln!("lvm CSI snapshot and restore: {points} kill points, all passed");
}

/// The matrix on a clone of a thick volume (a thick copy) and its delete.
#[test]
fn killed_at_every_point_of_a_clone_the_retry_finishes_it() {
    use wasmvol_tests::kill_matrix::{matrix, Step::*};
    let points = matrix(kill_flow(&[Create, Clone, DeleteClone, Delete]));
    eprintln!("lvm CSI clone: {points} kill points, all passed");
}

/// The matrix on a thin volume in `pool0`: its snapshot, a restore from it
/// (a thin snapshot of the snapshot, one `lvcreate`) and their deletes. (A
/// thin clone is the same operation on the volume itself; with it the flow
/// took 11 minutes under emulation, 38 s a point.)
#[test]
fn killed_at_every_point_of_a_thin_volumes_snapshot_and_restore_the_retry_finishes_it() {
    use wasmvol_tests::kill_matrix::{matrix, SNAPSHOT_AND_RESTORE};
    let points = matrix(kill_flow_with(
        &[("volumegroup", "kube_vg"), ("thinpool", "pool0")],
        SNAPSHOT_AND_RESTORE,
    ));
    eprintln!("lvm CSI thin snapshot and restore: {points} kill points, all passed");
}

/// Removes logical volume `vg/name` with the LVM tools.
fn lvremove(vg_name: &str) {
    let removed = Command::new("lvremove")
        .args(["-q", "-y", vg_name])
        .env("DM_DISABLE_UDEV", "1")
        .status()
        .unwrap();
    assert!(removed.success(), "lvremove {vg_name}");
}

/// Removes the Flex kill-point flow's volume, if there.
fn remove_kill_flex_volume() {
    if lvs("kube_vg").contains_key("kill-flex") {
        lvremove("kube_vg/kill-flex");
    }
}

/// The matrix on the classic `kubernetes.io/lvm` Flex volume, made on its
/// first mount: init, mount (create, mkfs, mount) and unmount through the
/// installed shim, the host killed at each point that may change state,
/// restarted, kubelet's call-out repeated and the flow finished; one
/// volume is made whatever the kill, and nothing is left mounted.
#[test]
fn killed_at_every_point_of_the_flex_mount_that_changes_state_the_retry_finishes_it() {
    use wasmvol_tests::kill_matrix::{matrix, Flow, Step::*};
    let points = matrix(Flow {
        lists: false,
        flex_options: &[
            ("kubernetes.io/fsType", "ext4"),
            ("volumeID", "kill-flex"),
            ("size", "64m"),
            ("volumegroup", "kube_vg"),
        ],
        storage: |_| {
            lvs("kube_vg")
                .into_iter()
                .filter(|(name, _)| name.contains("kill-flex"))
                .map(|(name, tags)| format!("{name} {tags}"))
                .collect()
        },
        changes_only: true,
        reset: remove_kill_flex_volume,
        ..Flow::new(
            "lvm",
            grants(false, true),
            &[Flex("init"), Flex("mount"), Flex("unmount")],
        )
    });
    remove_kill_flex_volume();
    eprintln!("lvm Flex: {points} kill points, all passed");
}
