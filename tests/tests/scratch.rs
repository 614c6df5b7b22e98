//! CSI ephemeral inline volumes on tmpfs: the scratch driver through a
//! `wasmvol serve` process, with the tmpfs capability's size cap.

use std::collections::HashMap;
use std::path::Path;

use tonic::Code;
use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::*;
use wasmvol_tests::{csi_channel, mount_options, Fixture, FixtureGrants, ServeProcess};

const MIB: u64 = 1 << 20;

fn publish_req(target: &Path, size: &str) -> NodePublishVolumeRequest {
    // As kubelet sends it for a pod's inline CSI volume.
    let context: HashMap<String, String> = [
        ("csi.storage.k8s.io/ephemeral", "true"),
        ("csi.storage.k8s.io/pod.name", "scratch-pod"),
        ("size", size),
        ("mode", "0750"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    NodePublishVolumeRequest {
        volume_id: "csi-0123456789abcdef".into(),
        target_path: target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(
                volume_capability::MountVolume {
                    volume_mount_group: "2000".into(),
                    ..Default::default()
                },
            )),
            access_mode: Some(volume_capability::AccessMode {
                mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
            }),
        }),
        volume_context: context,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_inline_volume_lives_and_dies_with_its_tmpfs_within_the_cap() {
    let f = Fixture::new(
        "scratch",
        FixtureGrants {
            storage: None,
            state_quota: None,
            csi: true,
            tmpfs_max_bytes: Some(32 * MIB),
            ..FixtureGrants::default()
        },
    );
    let serve = ServeProcess::start(&f);
    let mut node = NodeClient::new(csi_channel(&serve.socket).await);
    let target = f.dir.path().join("pods/scratch-pod/volumes/scratch");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();

    // Past the cap: refused, audited, nothing mounted or made.
    let err = node
        .node_publish_volume(publish_req(&target, "64Mi"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("max_bytes"), "{}", err.message());
    assert!(f.mounts().is_empty(), "{:?}", f.mounts());
    assert!(!target.exists(), "a refused publish left its target behind");
    let denial = f
        .audit()
        .into_iter()
        .find(|r| r["operation"] == "tmpfs.mount-onto")
        .expect("the refusal is audited");
    assert_eq!(denial["decision"], "deny");
    assert_eq!(denial["args"]["size_bytes"], 64 * MIB);

    // Within it: a tmpfs of that size, with the group kubelet asked for.
    for _ in 0..2 {
        node.node_publish_volume(publish_req(&target, "16Mi"))
            .await
            .expect("publish");
    }
    assert_eq!(f.mounts(), std::slice::from_ref(&target));
    let st = nix::sys::statvfs::statvfs(&target).unwrap();
    assert_eq!(st.blocks() * st.fragment_size(), 16 * MIB);
    let opts = mount_options(&target);
    assert!(
        opts.contains(&"nosuid".into()) && opts.contains(&"nodev".into()),
        "{opts:?}"
    );
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o750, 2000));
    std::fs::write(target.join("small"), vec![1u8; MIB as usize]).unwrap();
    let full = std::fs::write(target.join("big"), vec![1u8; 17 * MIB as usize]).unwrap_err();
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");

    let stats = node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "csi-0123456789abcdef".into(),
            volume_path: target.display().to_string(),
            ..Default::default()
        })
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(stats.usage[0].total, (16 * MIB) as i64);

    // Unpublish: the mount and its contents are gone, and the target the host made too.
    for _ in 0..2 {
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: "csi-0123456789abcdef".into(),
            target_path: target.display().to_string(),
        })
        .await
        .expect("unpublish");
    }
    assert!(f.mounts().is_empty(), "{:?}", f.mounts());
    assert!(!target.exists(), "the host-made target is left behind");
}
