//! Hot upgrade: a `wasmvol serve` process swaps hostpath between two real
//! builds (0.1.0, `plugins/hostpath`, and 0.2.0, `tests/drivers/hostpath-next`)
//! twenty times while CSI clients and Flex shims exec'd as kubelet does
//! keep calling it, with real mounts. No call may fail, every call is
//! answered by one of the two versions, and the audit records say which.
//! A reload that cannot be honoured is refused with its reason while every
//! driver serves on as before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasmvol::csi::proto::identity_client::IdentityClient;
use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::{
    controller_client::ControllerClient, DeleteVolumeRequest, GetPluginInfoRequest,
    NodePublishVolumeRequest, NodeUnpublishVolumeRequest,
};
use wasmvol_tests::csi_requests::{create_req, rw};
use wasmvol_tests::{
    component, csi_channel, exec_flex_shim, http_get, install_flex_shim, mounts_under, sha256_file,
    wasmvol_bin, Fixture, FixtureGrants, ServeProcess,
};

const SWAPS: usize = 20;
const VERSIONS: [&str; 2] = ["0.1.0", "0.2.0"];

fn grants() -> FixtureGrants {
    FixtureGrants {
        csi: true,
        flex: true,
        ..FixtureGrants::default()
    }
}

/// Points the policy at version `i` (0: hostpath, 1: hostpath-next).
fn pin_version(f: &Fixture, i: usize, g: &FixtureGrants) -> String {
    let c = component(["hostpath", "hostpath-next"][i]);
    let digest = sha256_file(&c);
    f.write_policy(&c, &digest, g);
    digest
}

fn reload(f: &Fixture) -> std::process::Output {
    Command::new(wasmvol_bin())
        .args(["reload", "--config"])
        .arg(&f.policy_path)
        .output()
        .unwrap()
}

fn status(f: &Fixture) -> Value {
    let out = Command::new(wasmvol_bin())
        .args(["status", "-o", "json", "--config"])
        .arg(&f.policy_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The digest of the version serving `hostpath`, as the host says.
fn serving_digest(f: &Fixture) -> String {
    status(f)["drivers"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn plugin_version(socket: &Path) -> String {
    IdentityClient::new(csi_channel(socket).await)
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .expect("GetPluginInfo")
        .into_inner()
        .vendor_version
}

/// What the load saw: failures (none allowed) and versions that answered.
#[derive(Default)]
struct Seen {
    failures: Mutex<Vec<String>>,
    versions: Mutex<BTreeSet<String>>,
    calls: AtomicUsize,
}

impl Seen {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// One CSI client's loop: info, create, publish, unpublish, delete.
async fn csi_load(
    socket: PathBuf,
    targets: PathBuf,
    worker: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) {
    let channel = csi_channel(&socket).await;
    let mut identity = IdentityClient::new(channel.clone());
    let mut controller = ControllerClient::new(channel.clone());
    let mut node = NodeClient::new(channel);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let step = format!("csi worker {worker} round {n}");
        match identity.get_plugin_info(GetPluginInfoRequest {}).await {
            Ok(info) => {
                seen.versions
                    .lock()
                    .unwrap()
                    .insert(info.into_inner().vendor_version);
            }
            Err(e) => seen.fail(format!("{step}: GetPluginInfo: {e:?}")),
        }
        let v = match controller
            .create_volume(create_req(&format!("hot-{worker}-{n}"), 1 << 20))
            .await
        {
            Ok(r) => r.into_inner().volume.unwrap(),
            Err(e) => {
                seen.fail(format!("{step}: CreateVolume: {e:?}"));
                continue;
            }
        };
        let target = targets.join(format!("w{worker}-{n}"));
        let publish = NodePublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            target_path: target.display().to_string(),
            volume_capability: Some(rw()),
            ..Default::default()
        };
        if let Err(e) = node.node_publish_volume(publish).await {
            seen.fail(format!("{step}: NodePublishVolume: {e:?}"));
        }
        let unpublish = NodeUnpublishVolumeRequest {
            volume_id: v.volume_id.clone(),
            target_path: target.display().to_string(),
        };
        if let Err(e) = node.node_unpublish_volume(unpublish).await {
            seen.fail(format!("{step}: NodeUnpublishVolume: {e:?}"));
        }
        let delete = DeleteVolumeRequest {
            volume_id: v.volume_id,
            ..Default::default()
        };
        if let Err(e) = controller.delete_volume(delete).await {
            seen.fail(format!("{step}: DeleteVolume: {e:?}"));
        }
        seen.calls.fetch_add(5, Ordering::Relaxed);
    }
}

/// Flex: mount and unmount, each an exec of the installed shim.
fn flex_load(shim: PathBuf, pods: PathBuf, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let dir = pods.join(format!("pod-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let options = json!({"kubernetes.io/fsType": "", "kubernetes.io/readwrite": "rw",
            "kubernetes.io/pvOrVolumeName": format!("pv-hot-{}", n % 4)})
        .to_string();
        let dir_arg = dir.to_str().unwrap();
        for args in [vec!["mount", dir_arg, &options], vec!["unmount", dir_arg]] {
            let answer = exec_flex_shim(&shim, &args);
            if answer["status"] != "Success" {
                seen.fail(format!("flex round {n}: {args:?}: {answer}"));
            }
            seen.calls.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_swaps_under_csi_and_flex_load_drop_no_call() {
    let g = grants();
    let f = Fixture::new("hostpath", g.clone());
    let digests = [
        pin_version(&f, 0, &g),
        sha256_file(&component("hostpath-next")),
    ];
    assert_ne!(digests[0], digests[1]);
    let shim = install_flex_shim(&f);
    let _serve = ServeProcess::start(&f);
    assert_eq!(plugin_version(&f.csi_socket()).await, VERSIONS[0]);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let targets = f.dir.path().join("targets");
    let mut load = Vec::new();
    for worker in 0..2 {
        load.push(tokio::spawn(csi_load(
            f.csi_socket(),
            targets.clone(),
            worker,
            stop.clone(),
            seen.clone(),
        )));
    }
    let flex = {
        let (stop, seen, pods) = (stop.clone(), seen.clone(), f.dir.path().join("pods"));
        std::thread::spawn(move || flex_load(shim, pods, stop, seen))
    };

    let mut took = Vec::new();
    for swap in 1..=SWAPS {
        // Let calls run on the version serving now before swapping it.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let to = swap % 2;
        pin_version(&f, to, &g);
        let started = Instant::now();
        if swap % 4 == 0 {
            // As logrotate or an operator's `kill -HUP` would.
            _serve.signal(nix::sys::signal::Signal::SIGHUP);
            while serving_digest(&f) != digests[to] {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "SIGHUP swap {swap} took no effect"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            let out = reload(&f);
            assert!(out.status.success(), "swap {swap}: {out:?}");
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                said.contains(&format!("-> {}", VERSIONS[to])),
                "swap {swap}: {said}"
            );
            assert_eq!(serving_digest(&f), digests[to], "swap {swap}");
        }
        took.push(started.elapsed());
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    flex.join().unwrap();

    let failures = seen.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} calls failed across the swaps: {failures:#?}",
        failures.len()
    );
    let calls = seen.calls.load(Ordering::Relaxed);
    assert!(calls >= 100, "only {calls} calls ran across {SWAPS} swaps");
    let versions = seen.versions.lock().unwrap().clone();
    assert_eq!(
        versions,
        VERSIONS.iter().map(|v| v.to_string()).collect(),
        "GetPluginInfo answered by"
    );
    assert!(
        mounts_under(f.dir.path()).is_empty(),
        "every mount was unmounted"
    );

    // Every record names the component version that made it: one of the
    // two, the same for every record of one driver call, and both served
    // CSI and Flex calls.
    let mut by_request: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut served: BTreeSet<(String, String)> = BTreeSet::new();
    for r in f.audit() {
        let component = r["component"]
            .as_str()
            .unwrap_or_else(|| panic!("no component in {r}"))
            .to_owned();
        assert!(digests.contains(&component), "{r}");
        let request = r["request_id"].as_str().unwrap().to_owned();
        // Front-end calls; the rest are each version's own identity check at load.
        let Some(front) = request
            .split('-')
            .next()
            .filter(|f| *f == "csi" || *f == "flex")
        else {
            continue;
        };
        served.insert((front.to_owned(), component.clone()));
        by_request.entry(request).or_default().insert(component);
    }
    for (request, components) in &by_request {
        assert_eq!(
            components.len(),
            1,
            "request {request} ran on {components:?}"
        );
    }
    for front in ["csi", "flex"] {
        for d in &digests {
            assert!(
                served.contains(&(front.to_owned(), d.clone())),
                "no {front} call ran on {d}: {served:?}"
            );
        }
    }
    let slowest = took.iter().max().unwrap();
    eprintln!("{SWAPS} swaps under load, {calls} calls, none failed; slowest swap {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cannot_be_honoured_is_refused_and_every_driver_serves_on() {
    let g = grants();
    let f = Fixture::new("hostpath", g.clone());
    let first = pin_version(&f, 0, &g);
    let serve = ServeProcess::start(&f);
    let next = component("hostpath-next");

    let refused = |out: std::process::Output, says: &str| {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("reload refused") && err.contains(says),
            "want `{says}`: {err}"
        );
    };
    let still_first = |f: &Fixture| {
        assert_eq!(serving_digest(f), first);
    };

    // The next version under the digest of the one serving.
    f.write_policy(&next, &first, &g);
    refused(reload(&f), "sha256");
    still_first(&f);
    assert_eq!(plugin_version(&f.csi_socket()).await, VERSIONS[0]);

    // An import the new grants do not cover (hostpath needs its storage root).
    f.write_policy(
        &next,
        &sha256_file(&next),
        &FixtureGrants {
            storage: None,
            ..g.clone()
        },
    );
    refused(reload(&f), "storage");
    still_first(&f);

    // A [host] setting (the metrics endpoint) is opened once, at start.
    f.write_policy(
        &next,
        &sha256_file(&next),
        &FixtureGrants {
            http: true,
            ..g.clone()
        },
    );
    refused(reload(&f), "[host]");
    still_first(&f);

    // A policy that does not parse, on SIGHUP: the host says why in its
    // status (asked on the admin socket directly: the CLI would need the
    // policy to find it).
    std::fs::write(&f.policy_path, "[host\nnot toml").unwrap();
    serve.signal(nix::sys::signal::Signal::SIGHUP);
    let admin = f.dir.path().join("state/admin.sock");
    let started = Instant::now();
    let note = loop {
        let answer =
            wasmvol::admin::request(&admin, &wasmvol::admin::AdminRequest::Status).unwrap();
        let Some(wasmvol::admin::AdminAnswer::Status(s)) = answer else {
            panic!("status: {answer:?}")
        };
        if let Some(n) = s
            .last_reload
            .filter(|n| n.contains("refused") && !n.contains("[host]"))
        {
            break n;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no reload noted"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        note.contains(f.policy_path.to_str().unwrap()),
        "names the file: {note}"
    );
    f.write_policy(&component("hostpath"), &first, &g);
    still_first(&f);

    // Through every refusal the driver kept serving: a volume round trip.
    let mut controller = ControllerClient::new(csi_channel(&f.csi_socket()).await);
    let v = controller
        .create_volume(create_req("after-refusals", 1 << 20))
        .await
        .expect("CreateVolume after the refused reloads")
        .into_inner()
        .volume
        .unwrap();
    controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: v.volume_id,
            ..Default::default()
        })
        .await
        .unwrap();

    // And a good one then takes effect.
    pin_version(&f, 1, &g);
    let out = reload(&f);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(plugin_version(&f.csi_socket()).await, VERSIONS[1]);
    let ok = status(&f)["last_reload"].as_str().unwrap().to_owned();
    assert!(
        ok.contains("0.1.0") && ok.contains("0.2.0") && !ok.contains("refused"),
        "{ok}"
    );
}

/// A reload may move a driver's CSI socket, rename it, take it off CSI
/// and offer it over Flex instead: each front end follows, old sockets go,
/// and `/healthz` tells how the last reload went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_renames_and_swaps_front_ends() {
    let g = FixtureGrants {
        http: true,
        ..grants()
    };
    let g = FixtureGrants { flex: false, ..g };
    let f = Fixture::new("hostpath", g.clone());
    let _serve = ServeProcess::start(&f);
    let (code, body) = http_get(&f.http_socket(), "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"), "no reload yet");

    // Moved and renamed.
    let text = std::fs::read_to_string(&f.policy_path).unwrap();
    let old_socket = f.csi_socket();
    let new_socket = old_socket.with_file_name("moved.sock");
    let moved = text
        .replace(old_socket.to_str().unwrap(), new_socket.to_str().unwrap())
        .replace("hostpath.csi.wasmvol.io", "renamed.csi.wasmvol.io");
    assert_ne!(moved, text);
    std::fs::write(&f.policy_path, moved).unwrap();
    let out = reload(&f);
    assert!(out.status.success(), "{out:?}");
    let info = IdentityClient::new(csi_channel(&new_socket).await)
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "renamed.csi.wasmvol.io");
    assert!(!old_socket.exists(), "the old socket is gone");
    let (code, body) = http_get(&f.http_socket(), "/healthz");
    assert_eq!(code, 200);
    assert!(
        body.starts_with("ok\nlast reload at ") && body.contains("`hostpath`"),
        "{body}"
    );

    // Off CSI, onto Flex.
    f.write_policy(
        &component("hostpath"),
        &sha256_file(&component("hostpath")),
        &FixtureGrants {
            csi: false,
            flex: true,
            ..g.clone()
        },
    );
    let out = reload(&f);
    assert!(out.status.success(), "{out:?}");
    assert!(!new_socket.exists(), "no driver serves CSI any more");
    let shim = install_flex_shim(&f);
    let init = exec_flex_shim(&shim, &["init"]);
    assert_eq!(init["status"], "Success", "{init}");
    let st = status(&f);
    assert_eq!(st["drivers"][0]["csi"], Value::Null, "{st}");
    assert_eq!(st["drivers"][0]["flex"], "wasmvol/hostpath", "{st}");

    // A refused reload shows on /healthz without failing it.
    f.write_policy(
        &component("hostpath-next"),
        &sha256_file(&component("hostpath")),
        &FixtureGrants {
            csi: false,
            flex: true,
            ..g
        },
    );
    assert_eq!(reload(&f).status.code(), Some(1));
    let (code, body) = http_get(&f.http_socket(), "/healthz");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("refused, drivers serve as before") && body.contains("sha256"),
        "{body}"
    );
}

/// A reload that keeps a driver's concurrency and a memory limit its
/// engine's pool holds loads the next version onto that engine (no new
/// instance pool or epoch thread per upgrade); one that raises the memory
/// limit past the pool gets an engine of its own. Both versions answer.
#[test]
fn a_reload_keeps_the_engine_while_the_limits_fit_it() {
    use wasmvol::call::{Operation, Outcome};
    let g = grants();
    let f = Fixture::new("hostpath", g.clone());
    let rt = f.runtime();
    let engine = |rt: &wasmvol::runtime::Runtime| {
        Arc::as_ptr(rt.driver("hostpath").expect("served").engine().0)
    };
    let version = |rt: &wasmvol::runtime::Runtime| match rt.call("hostpath", "t", Operation::Info) {
        Ok(Outcome::Info(info)) => info.vendor_version,
        other => panic!("info answered {other:?}"),
    };
    let first = engine(&rt);
    assert_eq!(version(&rt), VERSIONS[0]);

    pin_version(&f, 1, &g);
    rt.reload(&f.policy()).expect("reload");
    assert_eq!(version(&rt), VERSIONS[1]);
    assert_eq!(
        engine(&rt),
        first,
        "same limits: the next version runs on the same engine"
    );

    let bigger = FixtureGrants {
        memory_bytes: g.memory_bytes * 2,
        ..g.clone()
    };
    pin_version(&f, 0, &bigger);
    rt.reload(&f.policy()).expect("reload");
    assert_eq!(version(&rt), VERSIONS[0]);
    assert_ne!(
        engine(&rt),
        first,
        "a larger memory limit than the pool holds: a new engine"
    );
}
