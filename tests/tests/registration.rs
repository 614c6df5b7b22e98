//! Built-in kubelet plugin registration: a client that behaves as kubelet's
//! plugin watcher does (finds the socket in `plugins_registry`, calls
//! GetInfo, dials the endpoint it names, reports the registration status)
//! against a separate `wasmvol serve`, under a non-default kubelet root and
//! under the default one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::NodeGetInfoRequest;
use wasmvol::csi::registration::proto::registration_client::RegistrationClient;
use wasmvol::csi::registration::proto::{InfoRequest, RegistrationStatus};
use wasmvol_tests::{csi_channel, Fixture, FixtureGrants, ServeProcess};

const NAME: &str = "hostpath.csi.wasmvol.io";

/// Polls `done` without blocking the runtime (the clients' connections
/// live on it, and must close when dropped).
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The sockets in the registration dir kubelet's watcher would try (not dot-files).
fn candidates(registry: &Path) -> Vec<String> {
    std::fs::read_dir(registry)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// kubelet's side, start to end, under kubelet root `root`.
async fn register_as_kubelet_does(root: &Path) {
    let registry = root.join("plugins_registry");
    let reg_socket = registry.join(format!("{NAME}-reg.sock"));
    // A stale socket from a host that died: replaced at start.
    std::fs::create_dir_all(&registry).unwrap();
    wasmvol_tests::stale_socket(&reg_socket);
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            csi: true,
            kubelet_root: Some(root.to_owned()),
            ..FixtureGrants::default()
        },
    );
    let csi_socket = root.join("plugins").join(NAME).join("csi.sock");
    let mut serve = ServeProcess::start_on(&f, &csi_socket);
    wait_for("the registration socket", || {
        std::os::unix::net::UnixStream::connect(&reg_socket).is_ok()
    })
    .await;
    assert_eq!(candidates(&registry), [format!("{NAME}-reg.sock")]);

    let mut reg = RegistrationClient::new(csi_channel(&reg_socket).await);
    let info = reg.get_info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.r#type, "CSIPlugin");
    assert_eq!(info.name, NAME);
    assert_eq!(PathBuf::from(&info.endpoint), csi_socket);
    assert_eq!(info.supported_versions, ["1.0.0"]);
    // At registration kubelet dials the endpoint and asks NodeGetInfo.
    let mut node = NodeClient::new(csi_channel(Path::new(&info.endpoint)).await);
    let node_info = node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node_info.node_id, "test-node");
    reg.notify_registration_status(RegistrationStatus {
        plugin_registered: true,
        error: String::new(),
    })
    .await
    .unwrap();
    // GetInfo again, as newer kubelets do every 10 s: the same answer.
    let again = reg.get_info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(again, info);

    // Refused: the host makes its socket anew, which the watcher retries.
    // A file's change time moves when it is made (inode numbers are reused).
    let made_at = |m: std::fs::Metadata| (m.ctime(), m.ctime_nsec(), m.ino());
    let first = made_at(std::fs::metadata(&reg_socket).unwrap());
    reg.notify_registration_status(RegistrationStatus {
        plugin_registered: false,
        error: "kubelet says no".into(),
    })
    .await
    .unwrap();
    wait_for("a new registration socket", || {
        std::fs::metadata(&reg_socket).is_ok_and(|m| made_at(m) != first)
            && std::os::unix::net::UnixStream::connect(&reg_socket).is_ok()
    })
    .await;
    let mut reg = RegistrationClient::new(csi_channel(&reg_socket).await);
    assert_eq!(
        reg.get_info(InfoRequest {}).await.unwrap().into_inner(),
        info
    );
    assert!(serve.alive());
    assert_eq!(candidates(&registry), [format!("{NAME}-reg.sock")]);

    // SIGTERM: the host removes the sockets it made, and only those.
    drop((reg, node));
    let other = registry.join("other.csi.example-reg.sock");
    let _other = std::os::unix::net::UnixListener::bind(&other).unwrap();
    serve.signal(nix::sys::signal::Signal::SIGTERM);
    let exiting = Instant::now();
    wait_for("the host to exit", || !serve.alive()).await;
    assert!(
        exiting.elapsed() < Duration::from_secs(3),
        "an idle host takes {:?} to stop",
        exiting.elapsed()
    );
    assert!(!reg_socket.exists(), "registration socket left behind");
    assert!(!csi_socket.exists(), "CSI socket left behind");
    assert!(other.exists(), "another plugin's socket was removed");
}

#[tokio::test]
async fn a_driver_registers_under_a_non_default_kubelet_root() {
    let dir = tempfile::tempdir().unwrap();
    register_as_kubelet_does(&dir.path().join("kubelet")).await;
}

#[tokio::test]
async fn a_driver_registers_under_the_default_kubelet_root() {
    // /var/lib/kubelet as this test sees it is a tmpfs of its own mount
    // namespace (and that of the host it starts), so the machine's is untouched.
    wasmvol_tests::require_privileged();
    let root = Path::new("/var/lib/kubelet");
    let made = !root.exists();
    std::fs::create_dir_all(root).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    register_as_kubelet_does(root).await;
    nix::mount::umount(root).unwrap();
    if made {
        let _ = std::fs::remove_dir(root);
    }
}
