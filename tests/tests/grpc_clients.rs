//! Any gRPC client, not only Go's: a Python grpcio client (gRPC C-core,
//! default channel options, which name the socket path as `:authority`)
//! drives a publish and an unpublish against `wasmvol serve`'s CSI socket
//! (see `wasmvol::grpc_authority`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::DeleteVolumeRequest;
use wasmvol_tests::{csi_channel, Fixture, FixtureGrants, ServeProcess};

/// The Python with grpcio and grpcio-tools that scripts/test.sh installs.
fn python() -> PathBuf {
    let python = std::env::var_os("WASMVOL_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} has no grpcio: scripts/test.sh installs it (pip install grpcio grpcio-tools)",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_with_default_options_publishes_and_unpublishes() {
    let python = python();
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            csi: true,
            ..FixtureGrants::default()
        },
    );
    let stubs = f.dir.path().join("stubs");
    std::fs::create_dir(&stubs).unwrap();
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let out = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .arg(proto.join("csi.proto"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let serve = ServeProcess::start(&f);
    let target = f.target("pod-python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("grpcio/csi_publish.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&serve.socket)
        .arg(&target)
        .arg(&stubs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["name"], "hostpath.csi.wasmvol.io");
    assert_eq!(seen["conflict"], "ALREADY_EXISTS");
    assert_eq!(seen["mounted_after_unpublish"], false);
    // What it wrote went through the bind mount into the volume's directory.
    let id = seen["volume_id"].as_str().unwrap();
    let written = f.root().join("volumes").join(id).join("from-python");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "written through the mount"
    );
    assert!(f.mounts().is_empty(), "{:?}", f.mounts());
    let mut c = ControllerClient::new(csi_channel(&serve.socket).await);
    c.delete_volume(DeleteVolumeRequest {
        volume_id: id.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(!written.exists());
}
