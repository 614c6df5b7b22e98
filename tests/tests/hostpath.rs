//! hostpath end to end: through the host library and through `wasmvol call`,
//! with real bind mounts in a private mount namespace.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use wasmvol::bindings::DriverError;
use wasmvol::call::{CallError, Operation, Outcome};
use wasmvol::runtime::Runtime;
use wasmvol_tests::{wasmvol_bin, Fixture, FixtureGrants};

const GIB: u64 = 1 << 30;

fn mount_cap(mode: &str) -> Value {
    json!({"access_type": {"Mount": {"fs_type": "", "mount_flags": [], "volume_mount_group": ""}}, "access_mode": mode})
}

fn create_req(name: &str, bytes: u64, source: Value) -> Value {
    json!({
        "name": name, "capacity_range": {"required_bytes": bytes, "limit_bytes": 0},
        "volume_capabilities": [mount_cap("SingleNodeWriter")], "parameters": [], "secrets": [],
        "content_source": source, "accessibility_requirements": null, "mutable_parameters": []
    })
}

fn publish_req(target: &Path, volume_id: &str, readonly: bool) -> Value {
    json!({
        "target_path": target, "volume_id": volume_id, "publish_context": [],
        "volume_capability": mount_cap("SingleNodeWriter"), "readonly": readonly,
        "secrets": [], "volume_context": []
    })
}

fn call(rt: &Runtime, name: &str, req: Value) -> Result<Outcome, CallError> {
    rt.call(
        "hostpath",
        "test",
        Operation::from_json(name, req).expect("valid op"),
    )
}

fn create(rt: &Runtime, name: &str, bytes: u64, source: Value) -> String {
    match call(rt, "create-volume", create_req(name, bytes, source)).expect("create") {
        Outcome::Volume(v) => v.volume_id,
        other => panic!("unexpected {other:?}"),
    }
}

fn is_mounted(p: &Path) -> bool {
    wasmvol::sys::mount::is_mount_point(p).unwrap()
}

#[test]
fn full_lifecycle_through_the_library_is_idempotent() {
    let f = Fixture::new("hostpath", FixtureGrants::default());
    let rt = f.runtime();

    // Create, twice: same volume.
    let id = create(&rt, "pvc-a", GIB, Value::Null);
    assert_eq!(create(&rt, "pvc-a", GIB, Value::Null), id);
    assert!(f.root().join("volumes").join(&id).is_dir());
    // Same name, incompatible size: already-exists.
    match call(
        &rt,
        "create-volume",
        create_req("pvc-a", 2 * GIB, Value::Null),
    ) {
        Err(CallError::Driver(DriverError::AlreadyExists(_))) => {}
        other => panic!("expected already-exists, got {other:?}"),
    }

    // Publish, twice: one mount, and data written through it lands in the volume.
    let target = f.target("pod-a");
    for _ in 0..2 {
        call(&rt, "node-publish", publish_req(&target, &id, false)).expect("publish");
    }
    assert!(is_mounted(&target));
    assert_eq!(
        f.mounts().iter().filter(|m| **m == target).count(),
        1,
        "publish twice must not stack mounts"
    );
    std::fs::write(target.join("hello.txt"), b"written through the target").unwrap();
    // A bind the host makes for a driver is nosuid,nodev, and says so in the audit log.
    let options = wasmvol_tests::mount_options(&target);
    assert!(
        options.iter().any(|o| o == "nosuid") && options.iter().any(|o| o == "nodev"),
        "{options:?}"
    );
    assert!(!wasmvol_tests::device_node_opens(&target));
    let bind = f
        .audit()
        .into_iter()
        .find(|r| r["operation"] == "mount.bind-from-root" && r["decision"] == "allow")
        .expect("the bind is audited");
    assert_eq!(bind["args"]["flags"], json!(["nosuid", "nodev"]));
    assert_eq!(
        std::fs::read(f.root().join("volumes").join(&id).join("hello.txt")).unwrap(),
        b"written through the target"
    );

    // Stats see the data.
    let stats = call(
        &rt,
        "node-get-volume-stats",
        json!({"target_path": target, "volume_id": id}),
    )
    .expect("stats");
    let Outcome::VolumeStats(stats) = stats else {
        panic!("{stats:?}")
    };
    assert_eq!(stats.usage[0].total, GIB);
    assert!(stats.usage[0].used > 0 && stats.usage[1].used >= 2);

    // Unpublish, twice.
    for _ in 0..2 {
        call(
            &rt,
            "node-unpublish",
            json!({"target_path": target, "volume_id": id}),
        )
        .expect("unpublish");
    }
    assert!(!is_mounted(&target));
    assert!(
        !target.join("hello.txt").exists(),
        "data must not be left in the target dir"
    );

    // Read-only publish refuses writes.
    let ro = f.target("pod-ro");
    call(&rt, "node-publish", publish_req(&ro, &id, true)).expect("ro publish");
    assert_eq!(
        std::fs::read(ro.join("hello.txt")).unwrap(),
        b"written through the target"
    );
    let err = std::fs::write(ro.join("nope"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    call(
        &rt,
        "node-unpublish",
        json!({"target_path": ro, "volume_id": id}),
    )
    .unwrap();
    assert!(!is_mounted(&ro));

    // Snapshot, twice: same snapshot; then restore and clone hold the data.
    let snap_req =
        json!({"source_volume_id": id, "name": "snap-1", "secrets": [], "parameters": []});
    let snap = match call(&rt, "create-snapshot", snap_req.clone()).unwrap() {
        Outcome::Snapshot(s) => s,
        o => panic!("{o:?}"),
    };
    let Outcome::Snapshot(again) = call(&rt, "create-snapshot", snap_req).unwrap() else {
        panic!()
    };
    assert_eq!(again.snapshot_id, snap.snapshot_id);
    assert!(snap.ready_to_use && snap.size_bytes > 0);
    std::fs::write(
        f.root().join("volumes").join(&id).join("hello.txt"),
        b"changed after snapshot",
    )
    .unwrap();

    let restored = create(
        &rt,
        "pvc-restored",
        GIB,
        json!({"Snapshot": snap.snapshot_id}),
    );
    assert_eq!(
        std::fs::read(f.root().join("volumes").join(&restored).join("hello.txt")).unwrap(),
        b"written through the target"
    );
    let clone = create(&rt, "pvc-clone", GIB, json!({"Volume": id}));
    assert_eq!(
        std::fs::read(f.root().join("volumes").join(&clone).join("hello.txt")).unwrap(),
        b"changed after snapshot"
    );

    // Listing pages through all three volumes.
    let Outcome::Volumes(page1) = call(
        &rt,
        "list-volumes",
        json!({"max_entries": 2, "starting_token": ""}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(page1.entries.len(), 2);
    let Outcome::Volumes(page2) = call(
        &rt,
        "list-volumes",
        json!({"max_entries": 2, "starting_token": page1.next_token}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(page2.entries.len(), 1);
    assert!(page2.next_token.is_empty());

    // Expansion is recorded.
    let Outcome::Expanded(exp) = call(
        &rt,
        "controller-expand",
        json!({"volume_id": id, "capacity_range": {"required_bytes": 3 * GIB, "limit_bytes": 0}, "secrets": [], "volume_capability": null}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(exp.capacity_bytes, 3 * GIB);

    // Delete everything, twice each.
    for _ in 0..2 {
        call(
            &rt,
            "delete-snapshot",
            json!({"snapshot_id": snap.snapshot_id, "secrets": []}),
        )
        .unwrap();
        for v in [&id, &restored, &clone] {
            call(&rt, "delete-volume", json!({"volume_id": v, "secrets": []})).unwrap();
        }
    }
    assert_eq!(
        std::fs::read_dir(f.root().join("volumes")).unwrap().count(),
        0
    );
    assert!(f.mounts().is_empty(), "{:?}", f.mounts());
}

#[test]
fn state_survives_a_host_restart() {
    let f = Fixture::new("hostpath", FixtureGrants::default());
    let id = create(&f.runtime(), "pvc-durable", GIB, Value::Null);
    // A new runtime (fresh engine, store reopened) still knows the volume.
    let rt = f.runtime();
    let Outcome::Volumes(list) = call(
        &rt,
        "list-volumes",
        json!({"max_entries": 0, "starting_token": ""}),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(list.entries.len(), 1);
    assert_eq!(list.entries[0].volume.volume_id, id);
}

fn cli(f: &Fixture, op: &str, req: Value) -> (bool, String, String) {
    let out = Command::new(wasmvol_bin())
        .args(["call", "--config"])
        .arg(&f.policy_path)
        .args(["hostpath", op, "--request", &req.to_string()])
        .output()
        .expect("run wasmvol");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `wasmvol call` of a create of `name` (made at 1 GiB) at 2 GiB: the
/// driver's ALREADY_EXISTS, printed as its class and message, exit 12.
fn assert_create_conflict(f: &Fixture, name: &str) {
    let out = Command::new(wasmvol_bin())
        .args(["call", "--config"])
        .arg(&f.policy_path)
        .args(["hostpath", "create-volume", "--request"])
        .arg(create_req(name, 2 * GIB, Value::Null).to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("already-exists: "), "{err}");
    assert_eq!(out.status.code(), Some(12), "{err}");
}

#[test]
fn lifecycle_through_wasmvol_call() {
    let f = Fixture::new("hostpath", FixtureGrants::default());
    let (ok, out, err) = cli(&f, "create-volume", create_req("pvc-cli", GIB, Value::Null));
    assert!(ok, "{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["volume_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = f.target("pod-cli");
    for _ in 0..2 {
        let (ok, _, err) = cli(&f, "node-publish", publish_req(&target, &id, false));
        assert!(ok, "{err}");
    }
    std::fs::write(target.join("via-cli"), b"1").unwrap();
    assert!(f.root().join("volumes").join(&id).join("via-cli").exists());
    for _ in 0..2 {
        let (ok, _, err) = cli(
            &f,
            "node-unpublish",
            json!({"target_path": target, "volume_id": id}),
        );
        assert!(ok, "{err}");
    }
    assert!(!is_mounted(&target));
    // A driver's error: its class and message, and the class's exit status.
    assert_create_conflict(&f, "pvc-cli");
    let (ok, _, err) = cli(&f, "delete-volume", json!({"volume_id": id, "secrets": []}));
    assert!(ok, "{err}");

    // Bad input: one clear line, non-zero exit.
    let (ok, _, err) = cli(&f, "node-publish", json!({"volume_id": id}));
    assert!(!ok);
    assert!(
        err.starts_with("wasmvol: request for `node-publish`: missing field"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let (ok, _, err) = cli(&f, "publish-everything", json!({}));
    assert!(
        !ok && err.contains("unknown operation `publish-everything`"),
        "{err}"
    );
    assert!(f.mounts().is_empty());
}

/// `wasmvol status` of the running host of a policy, as JSON.
fn status(f: &Fixture) -> std::process::Output {
    Command::new(wasmvol_bin())
        .args(["status", "-o", "json", "--config"])
        .arg(&f.policy_path)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_call_go_through_the_running_host_over_its_root_only_admin_socket() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            csi: true,
            flex: true,
            ..FixtureGrants::default()
        },
    );
    let out = status(&f);
    assert!(!out.status.success(), "no host runs yet");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no wasmvol serve is running"), "{err}");

    let serve = wasmvol_tests::ServeProcess::start(&f);
    let admin = f.dir.path().join("state/admin.sock");
    let meta = std::fs::metadata(&admin).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);

    let out = status(&f);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &s["drivers"][0];
    assert_eq!(d["name"], "hostpath");
    assert_eq!(
        d["sha256"],
        wasmvol_tests::sha256_file(&wasmvol_tests::component("hostpath"))
    );
    assert_eq!(d["csi"]["name"], "hostpath.csi.wasmvol.io");
    assert_eq!(d["csi"]["socket"], f.csi_socket().display().to_string());
    assert_eq!(d["flex"], "wasmvol/hostpath");
    assert_eq!(d["calls_in_flight"], 0);
    assert_eq!(
        s["state_dir"],
        f.dir.path().join("state").display().to_string()
    );
    assert_eq!(s["flex_socket"], f.flex_socket().display().to_string());
    let yaml = Command::new(wasmvol_bin())
        .args(["status", "-o", "yaml", "--config"])
        .arg(&f.policy_path)
        .output()
        .unwrap();
    let yaml = String::from_utf8_lossy(&yaml.stdout);
    assert!(
        yaml.contains("drivers:") && yaml.contains("name: \"hostpath\""),
        "{yaml}"
    );

    // The host holds the store; the call goes through it, so its CSI socket
    // sees the volume the CLI made.
    let (ok, out, err) = cli(
        &f,
        "create-volume",
        create_req("pvc-admin", GIB, Value::Null),
    );
    assert!(ok, "{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["volume_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c = wasmvol::csi::proto::controller_client::ControllerClient::new(
        wasmvol_tests::csi_channel(&serve.socket).await,
    );
    let listed = c
        .list_volumes(wasmvol::csi::proto::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed
        .entries
        .iter()
        .any(|e| e.volume.as_ref().unwrap().volume_id == id));
    // A driver's error keeps its class and exit status over the socket.
    assert_create_conflict(&f, "pvc-admin");
    // Bad input is refused by the host with one clear line, and it keeps serving.
    let (ok, _, err) = cli(&f, "node-publish", json!({"volume_id": id}));
    assert!(!ok);
    assert!(
        err.starts_with("wasmvol: request for `node-publish`: missing field"),
        "{err}"
    );
    let (ok, _, err) = cli(&f, "delete-volume", json!({"volume_id": id, "secrets": []}));
    assert!(ok, "{err}");
    assert!(status(&f).status.success());
}
