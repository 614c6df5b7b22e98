//! NFS publish benchmark (real-kernel VM only: `scripts/bench-vm.sh`).
//!
//! NodePublish + NodeUnpublish of an NFS volume through wasmvol (nfs
//! driver, netfs capability: resolve, check, fsconfig mount, attach) beside
//! the same mount done the way csi-driver-nfs does it (exec `mount -t nfs
//! SERVER:/SHARE DIR`, which runs the mount.nfs helper, then exec `umount`),
//! interleaved in one run, NFSv4.2 over the guest's loopback.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use wasmvol::call::Operation;
use wasmvol::policy::file::NetfsEntry;
use wasmvol::policy::StorageAccess;
use wasmvol_tests::{Fixture, FixtureGrants};

fn op(name: &str, v: serde_json::Value) -> Operation {
    Operation::from_json(name, v).unwrap()
}

fn main() {
    let f = Fixture::new(
        "nfs",
        FixtureGrants {
            storage: None,
            state_quota: None,
            netfs: Some(NetfsEntry {
                servers: vec!["127.0.0.1/32".into()],
                exports: vec!["/srv/nfs".into()],
                versions: vec!["4.2".into()],
                options: Vec::new(),
                access: StorageAccess::ReadWrite,
            }),
            deadline_ms: 60_000,
            ..FixtureGrants::default()
        },
    );
    std::fs::create_dir_all("/srv/nfs/bench").unwrap();
    let rt = f.runtime();
    let target = f.dir.path().join("target");
    let native = f.dir.path().join("native");
    std::fs::create_dir_all(&native).unwrap();
    let cap = json!({"access_type": {"Mount": {"fs_type": "", "mount_flags": [], "volume_mount_group": ""}}, "access_mode": "SingleNodeMultiWriter"});
    let id = "127.0.0.1#/srv/nfs#bench#retain#4.2";
    let wasmvol_cycle = |target: &Path| {
        std::fs::create_dir_all(target).unwrap();
        rt.call(
            "nfs",
            "bench",
            op(
                "node-publish",
                json!({"target_path": target, "volume_id": id, "publish_context": [],
            "volume_capability": cap, "readonly": false, "secrets": [], "volume_context": []}),
            ),
        )
        .unwrap();
        rt.call(
            "nfs",
            "bench",
            op(
                "node-unpublish",
                json!({"target_path": target, "volume_id": id}),
            ),
        )
        .unwrap();
    };
    let native_cycle = |dir: &Path| {
        let ok = Command::new("mount")
            .args(["-t", "nfs", "-o", "vers=4.2", "127.0.0.1:/srv/nfs/bench"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount -t nfs failed");
        assert!(Command::new("umount").arg(dir).status().unwrap().success());
    };
    let n = 30;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..n + 3 {
        let t = Instant::now();
        wasmvol_cycle(&target);
        let w = t.elapsed();
        let t = Instant::now();
        native_cycle(&native);
        let m = t.elapsed();
        if i >= 3 {
            a.push(w);
            b.push(m);
        }
    }
    a.sort();
    b.sort();
    let med = |v: &[Duration]| v[v.len() / 2];
    println!(
        "{:<52} median {:>10.1?}  p90 {:>10.1?}",
        "NFS publish+unpublish via wasmvol",
        med(&a),
        a[n * 9 / 10]
    );
    println!(
        "{:<52} median {:>10.1?}  p90 {:>10.1?}",
        "the same as csi-driver-nfs (exec mount -t nfs, umount)",
        med(&b),
        b[n * 9 / 10]
    );
    let ratio = med(&a).as_secs_f64() / med(&b).as_secs_f64();
    println!(
        "{:<52} {ratio:.2}x  {}",
        "NFS ratio (medians)",
        if ratio <= 1.0 {
            "ok (budget 1.0x)"
        } else {
            "OVER BUDGET 1.0x"
        }
    );
    assert!(wasmvol_tests::mounts_under(f.dir.path()).is_empty());
}
