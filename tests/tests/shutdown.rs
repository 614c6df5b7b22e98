//! Graceful shutdown: on SIGTERM the host takes no new calls, lets the call
//! in flight finish and answer, then removes its sockets and exits.

use std::time::{Duration, Instant};

use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::{volume_capability, CreateVolumeRequest, VolumeCapability};
use wasmvol_tests::{csi_channel, Fixture, FixtureGrants, ServeProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_call_in_flight_answer_then_removes_the_socket() {
    let f = Fixture::new(
        "adversary",
        FixtureGrants {
            csi: true,
            device: true, // the adversary imports the device interface too
            deadline_ms: 10_000,
            ..FixtureGrants::default()
        },
    );
    let mut serve = ServeProcess::start(&f);
    let mut controller = ControllerClient::new(csi_channel(&serve.socket).await);
    let in_flight = tokio::spawn(async move {
        controller
            .create_volume(CreateVolumeRequest {
                name: "slow-1500".into(),
                volume_capabilities: vec![VolumeCapability {
                    access_type: Some(volume_capability::AccessType::Mount(Default::default())),
                    access_mode: Some(volume_capability::AccessMode {
                        mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
                    }),
                }],
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    serve.signal(nix::sys::signal::Signal::SIGTERM);
    // Taking no new calls: the socket is gone (or refuses) soon after.
    let socket = serve.socket.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the host still takes connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = in_flight
        .await
        .unwrap()
        .expect("the call in flight answers");
    assert_eq!(answer.into_inner().volume.unwrap().volume_id, "slow-1500");
    while serve.alive() {
        assert!(
            asked.elapsed() < Duration::from_secs(8),
            "the host did not exit once drained"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!socket.exists(), "the CSI socket is left behind");
}
