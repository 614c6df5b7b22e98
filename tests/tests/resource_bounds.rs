//! Resource bounds, tried as an attacker (or an unlucky cluster) would: a
//! host out of descriptors, a driver at its concurrency limit, hundreds of
//! idle peers, paths as long as the kernel allows. Each was seen to fail
//! once; each must now be answered, and the host keep serving.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use wasmvol_tests::{exec_flex_shim, install_flex_shim, Fixture, FixtureGrants, ServeProcess};

/// Descriptors the host may have: enough to start, few enough to run out.
const FD_LIMIT: u64 = 96;

#[test]
fn out_of_descriptors_the_host_backs_off_instead_of_spinning_and_recovers() {
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            flex: true,
            csi: true,
            ..FixtureGrants::default()
        },
    );
    let shim = install_flex_shim(&f);
    let serve = ServeProcess::start_with(&f, &f.csi_socket(), |cmd| {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: FD_LIMIT,
                    rlim_max: FD_LIMIT,
                };
                match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
    });
    // Idle peers on both sockets: each one the host accepts holds a descriptor.
    let mut peers = Vec::new();
    for i in 0..FD_LIMIT * 2 {
        let socket = if i % 2 == 0 {
            f.flex_socket()
        } else {
            f.csi_socket()
        };
        peers.push(
            std::os::unix::net::UnixStream::connect(socket).expect("connect (queued at worst)"),
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = serve.cpu_time();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let used = serve.cpu_time() - before;
    let share = used.as_secs_f64() / started.elapsed().as_secs_f64();
    assert!(
        share < 0.2,
        "the host used {used:?} of CPU in {:?} while out of descriptors",
        started.elapsed()
    );

    drop(peers);
    // The pauses top out at 1 s, and the Flex read timeout frees held peers.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let init = exec_flex_shim(&shim, &["init"]);
        if init["status"] == "Success" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the host does not serve again: {init}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// With every call slot of a driver taken by calls that run to their
/// deadline, CSI Probe and `/healthz` still answer at once: the driver is
/// busy, not broken (before, Probe waited a whole deadline for a slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_answers_within_100_ms_while_every_slot_is_busy() {
    use wasmvol::csi::proto::controller_client::ControllerClient;
    use wasmvol::csi::proto::identity_client::IdentityClient;
    use wasmvol::csi::proto::ProbeRequest;
    let f = Fixture::new(
        "adversary",
        FixtureGrants {
            csi: true,
            device: true,
            concurrency: 2,
            deadline_ms: 3_000,
            ..FixtureGrants::default()
        },
    );
    let _serve = ServeProcess::start(&f);
    let channel = wasmvol_tests::csi_channel(&f.csi_socket()).await;
    let mut identity = IdentityClient::new(channel.clone());
    let probe = identity.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true), "idle");

    // Two names (one operation per name at a time), both running to the deadline.
    let busy: Vec<_> = ["loop", "sleep-then-loop"]
        .into_iter()
        .map(|name| {
            let mut c = ControllerClient::new(channel.clone());
            tokio::spawn(async move {
                c.create_volume(wasmvol_tests::csi_requests::create_req(name, 1 << 20))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let t = Instant::now();
        let probe = identity.probe(ProbeRequest {}).await.unwrap().into_inner();
        let took = t.elapsed();
        assert_eq!(probe.ready, Some(true), "busy is not broken");
        assert!(
            took < Duration::from_millis(100),
            "Probe took {took:?} with every slot busy"
        );
    }
    for b in busy {
        let e = b.await.unwrap().unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    }
    let probe = identity.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true), "idle again");
}

/// Idle peers on the Flex socket hold a descriptor and a task each, never a
/// thread: kubelet's next exec is answered at once (before, 600 of them
/// filled the blocking pool and an `init` took 9.6 s). A peer that sends
/// nothing gets a Failure when its time is up.
#[test]
fn six_hundred_idle_flex_peers_do_not_hold_up_kubelet() {
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            flex: true,
            ..FixtureGrants::default()
        },
    );
    let shim = install_flex_shim(&f);
    let _serve = ServeProcess::start_on(&f, &f.flex_socket());
    let idle: Vec<_> = (0..600)
        .map(|_| std::os::unix::net::UnixStream::connect(f.flex_socket()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let t = Instant::now();
        let init = exec_flex_shim(&shim, &["init"]);
        assert_eq!(init["status"], "Success", "{init}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "init took {:?} beside 600 idle peers",
            t.elapsed()
        );
    }
    // A peer that never sends its request is told so, then let go.
    let mut silent = idle.into_iter().next().unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (code, json) = wasmvol_flex::read_reply(&mut silent).expect("a reply at the timeout");
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert!(
        json["message"].as_str().unwrap().contains("no request"),
        "{json}"
    );
}

/// A directory path of `len` bytes under `base` (components of 200 bytes).
fn long_dir(base: &std::path::Path, len: usize) -> std::path::PathBuf {
    let mut p = base.to_path_buf();
    let mut i = 0;
    while p.as_os_str().len() < len {
        p.push(format!("{i:0>200}"));
        i += 1;
    }
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A mount at a path longer than a record key may be (1 KiB) is recorded,
/// repeated idempotently and unmounted, over Flex and over CSI (before,
/// its record could not be written, so it could not be unmounted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_at_paths_of_two_kilobytes_are_recorded_and_undone() {
    use wasmvol::csi::proto::controller_client::ControllerClient;
    use wasmvol::csi::proto::node_client::NodeClient;
    use wasmvol::csi::proto::{NodePublishVolumeRequest, NodeUnpublishVolumeRequest};
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            flex: true,
            csi: true,
            ..FixtureGrants::default()
        },
    );
    let shim = install_flex_shim(&f);
    let _serve = ServeProcess::start(&f);

    let dir = long_dir(&f.dir.path().join("pods"), 2048);
    let dir_arg = dir.to_str().unwrap();
    let options = serde_json::json!({"kubernetes.io/fsType": "", "kubernetes.io/readwrite": "rw",
        "kubernetes.io/pvOrVolumeName": "pv-long"})
    .to_string();
    for _ in 0..2 {
        let a = exec_flex_shim(&shim, &["mount", dir_arg, &options]);
        assert_eq!(a["status"], "Success", "{a}");
    }
    assert_eq!(wasmvol_tests::mounts_under(f.dir.path()), vec![dir.clone()]);
    let a = exec_flex_shim(&shim, &["unmount", dir_arg]);
    assert_eq!(a["status"], "Success", "{a}");
    assert!(wasmvol_tests::mounts_under(f.dir.path()).is_empty());

    let channel = wasmvol_tests::csi_channel(&f.csi_socket()).await;
    let v = ControllerClient::new(channel.clone())
        .create_volume(wasmvol_tests::csi_requests::create_req("long", 1 << 20))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let target = long_dir(&f.dir.path().join("targets"), 2048).join("mnt");
    let mut node = NodeClient::new(channel);
    for _ in 0..2 {
        node.node_publish_volume(NodePublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            target_path: target.display().to_string(),
            volume_capability: Some(wasmvol_tests::csi_requests::rw()),
            ..Default::default()
        })
        .await
        .expect("publish at a 2 KiB target, and its repeat");
    }
    assert_eq!(
        wasmvol_tests::mounts_under(f.dir.path()),
        vec![target.clone()]
    );
    node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        target_path: target.display().to_string(),
    })
    .await
    .unwrap();
    assert!(wasmvol_tests::mounts_under(f.dir.path()).is_empty());
}

/// Hostile peers on the CSI socket: hundreds that connect and send nothing,
/// or half the HTTP/2 preface, then sit there. Probe from a real client
/// still answers within 100 ms, and once the handshake time is up the host
/// has let every one of them go (its descriptors are back where they were).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_grpc_peers_are_let_go_and_probe_answers_meanwhile() {
    use std::io::Write;
    use wasmvol::csi::proto::identity_client::IdentityClient;
    use wasmvol::csi::proto::ProbeRequest;
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            csi: true,
            ..FixtureGrants::default()
        },
    );
    let serve = ServeProcess::start(&f);
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", serve.pid()))
            .unwrap()
            .count()
    };
    let mut identity = IdentityClient::new(wasmvol_tests::csi_channel(&f.csi_socket()).await);
    identity.probe(ProbeRequest {}).await.unwrap();
    let before = fds();
    let peers: Vec<_> = (0..300)
        .map(|i| {
            let mut s = std::os::unix::net::UnixStream::connect(f.csi_socket()).unwrap();
            if i % 2 == 0 {
                s.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
            }
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        fds() >= before + 250,
        "the host holds the peers: {} then {}",
        before,
        fds()
    );
    for _ in 0..5 {
        let t = Instant::now();
        let p = identity.probe(ProbeRequest {}).await.unwrap().into_inner();
        assert_eq!(p.ready, Some(true));
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "Probe took {:?} beside 300 half-open peers",
            t.elapsed()
        );
    }
    let deadline =
        Instant::now() + wasmvol::grpc_authority::HANDSHAKE_TIMEOUT + Duration::from_secs(5);
    while fds() > before + 5 {
        assert!(
            Instant::now() < deadline,
            "the host still holds {} descriptors (before: {before})",
            fds()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The real client's connection was never one of them.
    identity.probe(ProbeRequest {}).await.unwrap();
    drop(peers);
}
