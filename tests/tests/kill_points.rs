//! The kill-point matrix over every CSI and Flex flow of the drivers that
//! run on this kernel (hostpath, loopfs, scratch; NFS and LVM run theirs in
//! the real-kernel VM): the host killed at each point a flow passes, then
//! restarted, kubelet's retry replayed and the flow finished, checked
//! against the uninterrupted flow (`wasmvol_tests::kill_matrix`).

use wasmvol_tests::kill_matrix::{
    matrix, modify_and_group_snapshot, Flow, Step::*, SNAPSHOT_AND_RESTORE,
};
use wasmvol_tests::FixtureGrants;

fn hostpath_grants() -> FixtureGrants {
    FixtureGrants {
        csi: true,
        ..FixtureGrants::default()
    }
}

fn hostpath_flex_grants() -> FixtureGrants {
    FixtureGrants {
        flex: true,
        ..FixtureGrants::default()
    }
}

fn loopfs_grants() -> FixtureGrants {
    FixtureGrants {
        csi: true,
        device: true,
        deadline_ms: 60_000,
        ..FixtureGrants::default()
    }
}

fn loopfs_flex_grants() -> FixtureGrants {
    FixtureGrants {
        flex: true,
        ..loopfs_grants()
    }
}

fn scratch_grants() -> FixtureGrants {
    FixtureGrants {
        storage: None,
        state_quota: None,
        csi: true,
        tmpfs_max_bytes: Some(8 << 20),
        ..FixtureGrants::default()
    }
}

/// Runs the matrix of `flow` and says how many points it covered.
fn run(name: &str, flow: Flow) {
    let points = matrix(flow);
    eprintln!("{name}: {points} kill points, all passed");
}

#[test]
fn hostpath_csi() {
    run(
        "hostpath CSI",
        Flow::new(
            "hostpath",
            hostpath_grants(),
            &[Create, Publish, Unpublish, Delete],
        ),
    );
}

#[test]
fn hostpath_csi_snapshot_and_restore() {
    run(
        "hostpath CSI snapshot and restore",
        Flow::new("hostpath", hostpath_grants(), SNAPSHOT_AND_RESTORE),
    );
}

#[test]
fn hostpath_csi_clone_and_expand() {
    run(
        "hostpath CSI clone and expand",
        Flow::new(
            "hostpath",
            hostpath_grants(),
            &[
                Create,
                Clone,
                DeleteClone,
                Publish,
                Expand,
                Unpublish,
                Delete,
            ],
        ),
    );
}

#[test]
fn hostpath_csi_modify_and_group_snapshot() {
    run(
        "hostpath CSI modify and group snapshot",
        Flow::new(
            "hostpath",
            hostpath_grants(),
            modify_and_group_snapshot(true),
        ),
    );
}

#[test]
fn hostpath_flex() {
    run(
        "hostpath Flex",
        Flow::new(
            "hostpath",
            hostpath_flex_grants(),
            &[Flex("init"), Flex("mount"), Flex("unmount")],
        ),
    );
}

#[test]
fn loopfs_csi_filesystem() {
    run(
        "loopfs CSI filesystem",
        Flow::new(
            "loopfs",
            loopfs_grants(),
            &[
                Create,
                ControllerPublish,
                Stage,
                Publish,
                Unpublish,
                Unstage,
                ControllerUnpublish,
                Delete,
            ],
        ),
    );
}

#[test]
fn loopfs_csi_snapshot_and_restore() {
    run(
        "loopfs CSI snapshot and restore",
        Flow::new("loopfs", loopfs_grants(), SNAPSHOT_AND_RESTORE),
    );
}

#[test]
fn loopfs_csi_modify_and_group_snapshot() {
    run(
        "loopfs CSI modify and group snapshot",
        Flow::new("loopfs", loopfs_grants(), modify_and_group_snapshot(false)),
    );
}

/// Expansion on the raw block flow: the backing file grows and the loop
/// device with it. (Growing a mounted ext4 needs CAP_SYS_RESOURCE, which
/// this sandbox's root lacks; the VM's LVM flow grows one under kills.)
#[test]
fn loopfs_csi_block() {
    run(
        "loopfs CSI block",
        Flow {
            block: true,
            ..Flow::new(
                "loopfs",
                loopfs_grants(),
                &[Create, Stage, Publish, Expand, Unpublish, Unstage, Delete],
            )
        },
    );
}

#[test]
fn loopfs_flex() {
    run(
        "loopfs Flex",
        Flow {
            flex_options: &[("kubernetes.io/fsType", "ext4")],
            ..Flow::new(
                "loopfs",
                loopfs_flex_grants(),
                &[
                    Flex("init"),
                    Flex("attach"),
                    Flex("waitforattach"),
                    Flex("mountdevice"),
                    Flex("mount"),
                    Flex("unmount"),
                    Flex("unmountdevice"),
                    Flex("detach"),
                ],
            )
        },
    );
}

#[test]
fn scratch_csi_ephemeral() {
    run(
        "scratch CSI ephemeral",
        Flow {
            ephemeral: true,
            lists: false,
            ..Flow::new("scratch", scratch_grants(), &[Publish, Unpublish])
        },
    );
}
