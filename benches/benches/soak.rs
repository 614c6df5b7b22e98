//! Soak (issue: faults, fuzzing and soak): `WASMVOL_SOAK_N` volumes (default
//! 2,000; `scripts/soak.sh N [DRIVER]`) of `WASMVOL_SOAK_DRIVER` (hostpath,
//! the default, loopfs or scratch) through their whole CSI life (create,
//! publish, unpublish, delete; loopfs also stages and unstages, with a real
//! mkfs and loop device each; scratch's are ephemeral inline volumes, a
//! tmpfs published and unpublished) at concurrency 8, while 8 Flex shims
//! (none for scratch) exec'd as kubelet
//! does run the driver's Flex life the same way (loopfs: attach, mountdevice,
//! mount and back), sampling the host's RSS, open descriptors and store
//! size every second. Passes when, after the first tenth (warm-up), RSS and
//! descriptors end no more than 10% above where they were, no call failed
//! and no mount or loop device is left. Samples go to
//! `target/soak-<driver>.csv`.
//!
//! nfs and lvm run in the real-kernel VM (`scripts/soak.sh N nfs|lvm`
//! boots it): nfs's volumes are directories on the VM's NFS export, each
//! published by an NFS mount, and its Flex shims mount a share directory
//! of their own; lvm's are thick logical volumes in `kube_vg`, staged with
//! mkfs, and its Flex shims mount a volume each made on its first mount.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::node_client::NodeClient;
use wasmvol::csi::proto::*;
use wasmvol_tests::csi_requests::{create_req, rw};
use wasmvol_tests::real_kernel;
use wasmvol_tests::{
    csi_channel, exec_flex_shim, install_flex_shim, loops_under, mounts_under, Fixture,
    FixtureGrants, ServeProcess,
};

#[derive(Clone, Copy)]
struct Sample {
    at: f64,
    done: usize,
    rss_kb: u64,
    fds: usize,
    store_kb: u64,
}

fn sample(pid: i32, store: &std::path::Path, started: Instant, done: usize) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Sample {
        at: started.elapsed().as_secs_f64(),
        done,
        rss_kb,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
        store_kb: std::fs::metadata(store).map_or(0, |m| m.len() / 1024),
    }
}

fn main() {
    let n: usize = std::env::var("WASMVOL_SOAK_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let driver = std::env::var("WASMVOL_SOAK_DRIVER").unwrap_or_else(|_| "hostpath".into());
    // scratch's volumes are ephemeral inline ones: no create or delete,
    // and no Flex life (Flex has no inline volumes). `block`: loopfs's
    // volumes are loop devices, attached over Flex; `stages`: loopfs's and
    // lvm's are staged (mkfs and a mount) before they are published.
    let (block, stages, ephemeral) = match driver.as_str() {
        "hostpath" | "nfs" => (false, false, false),
        "loopfs" => (true, true, false),
        "lvm" => (false, true, false),
        "scratch" => (false, false, true),
        other => panic!("WASMVOL_SOAK_DRIVER={other}: hostpath, loopfs, scratch, nfs or lvm"),
    };
    let defaults = FixtureGrants::default();
    let grants = match driver.as_str() {
        "nfs" => real_kernel::nfs_grants(true, true),
        "lvm" => real_kernel::lvm_grants(true, true),
        _ => FixtureGrants {
            csi: true,
            flex: !ephemeral,
            device: block,
            deadline_ms: 60_000,
            // scratch has no storage root and keeps no state.
            storage: defaults.storage.filter(|_| !ephemeral),
            state_quota: defaults.state_quota.filter(|_| !ephemeral),
            tmpfs_max_bytes: ephemeral.then_some(8 << 20),
            ..defaults
        },
    };
    // Where nfs's and lvm's volumes go: CreateVolume's parameters, and the
    // Flex options naming a worker's volume.
    let parameters: &[(&str, &str)] = match driver.as_str() {
        "nfs" => &[
            ("server", "nfs.test"),
            ("share", real_kernel::EXPORT),
            ("subDir", "soak"),
        ],
        "lvm" => &[("volumegroup", "kube_vg")],
        _ => &[],
    };
    let flex_options = |w: usize| -> Vec<(&'static str, String)> {
        match driver.as_str() {
            "nfs" => vec![
                ("kubernetes.io/fsType", "nfs".into()),
                ("server", "nfs.test".into()),
                ("share", real_kernel::EXPORT.into()),
                ("subDir", format!("soak-flex-{w}")),
            ],
            "lvm" => vec![
                ("kubernetes.io/fsType", "ext4".into()),
                ("volumeID", format!("soak-flex-{w}")),
                ("size", "16m".into()),
                ("volumegroup", "kube_vg".into()),
            ],
            _ if block => vec![("kubernetes.io/fsType", "ext4".into())],
            _ => Vec::new(),
        }
    };
    if driver == "nfs" {
        // Flex mounts a share directory that is there; it makes none.
        for w in 0..8 {
            std::fs::create_dir_all(
                std::path::Path::new(real_kernel::EXPORT).join(format!("soak-flex-{w}")),
            )
            .unwrap();
        }
    }
    let f = Fixture::new(
        &driver,
        FixtureGrants {
            concurrency: 16,
            ..grants
        },
    );
    let shim = (!ephemeral).then(|| install_flex_shim(&f));
    let serve = ServeProcess::start(&f);
    let pid = serve.pid().as_raw();
    let store = f.dir.path().join("state/state.redb");
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let sampler = {
        let (done, stop, store) = (done.clone(), stop.clone(), store.clone());
        std::thread::spawn(move || {
            let mut samples = vec![sample(pid, &store, started, 0)];
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                samples.push(sample(pid, &store, started, done.load(Ordering::Relaxed)));
            }
            samples
        })
    };
    // Flex: 8 shims in a loop, each on a volume of its own, until CSI is done.
    let flex: Vec<_> = shim
        .iter()
        .flat_map(|shim| (0..8).map(move |w| (w, shim.clone())))
        .map(|(w, shim)| {
            let (stop, errors, done) = (stop.clone(), errors.clone(), done.clone());
            let options = flex_options(w);
            let dir = f.dir.path().join(format!("pods/w{w}"));
            let devdir = f.dir.path().join(format!("devmounts/w{w}"));
            std::thread::spawn(move || {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::create_dir_all(&devdir).unwrap();
                let (d, dd) = (dir.to_str().unwrap(), devdir.to_str().unwrap());
                let mut o = serde_json::json!({
                    "kubernetes.io/fsType": "",
                    "kubernetes.io/readwrite": "rw",
                    "kubernetes.io/pvOrVolumeName": format!("pv-soak-{w}"),
                });
                for (k, v) in options {
                    o[k] = v.into();
                }
                let o = o.to_string();
                let call = |args: &[&str]| {
                    let a = exec_flex_shim(&shim, args);
                    done.fetch_add(1, Ordering::Relaxed);
                    if a["status"] != "Success" {
                        eprintln!("flex {args:?}: {a}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    a
                };
                while !stop.load(Ordering::Relaxed) {
                    if block {
                        let a = call(&["attach", &o, "test-node"]);
                        let dev = a["device"].as_str().unwrap_or_default().to_owned();
                        call(&["waitforattach", &dev, &o]);
                        call(&["mountdevice", dd, &dev, &o]);
                        call(&["mount", d, &o]);
                        call(&["unmount", d]);
                        call(&["unmountdevice", dd]);
                        call(&["detach", &format!("pv-soak-{w}"), "test-node"]);
                    } else {
                        call(&["mount", d, &o]);
                        call(&["unmount", d]);
                    }
                }
            })
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = csi_channel(&f.csi_socket()).await;
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (mut controller, mut node) = (
                ControllerClient::new(channel.clone()),
                NodeClient::new(channel.clone()),
            );
            let (next, errors, done) = (next.clone(), errors.clone(), done.clone());
            let targets = f.dir.path().join("targets");
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let target = targets.join(format!("soak-{i}"));
                    let staging = targets.join(format!("soak-{i}.staging"));
                    let result: Result<(), tonic::Status> = async {
                        if ephemeral {
                            let publish = NodePublishVolumeRequest {
                                volume_id: format!("csi-soak-{i}"),
                                target_path: target.display().to_string(),
                                volume_capability: Some(rw()),
                                volume_context: [
                                    ("csi.storage.k8s.io/ephemeral", "true"),
                                    ("size", "1Mi"),
                                ]
                                .into_iter()
                                .map(|(k, v)| (k.into(), v.into()))
                                .collect(),
                                ..Default::default()
                            };
                            node.node_publish_volume(publish).await?;
                            node.node_unpublish_volume(NodeUnpublishVolumeRequest {
                                volume_id: format!("csi-soak-{i}"),
                                target_path: target.display().to_string(),
                            })
                            .await?;
                            done.fetch_add(2, Ordering::Relaxed);
                            return Ok(());
                        }
                        let create = CreateVolumeRequest {
                            parameters: parameters
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .collect(),
                            ..create_req(&format!("soak-{i}"), 16 << 20)
                        };
                        let v = controller
                            .create_volume(create)
                            .await?
                            .into_inner()
                            .volume
                            .unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                        let staging = stages.then(|| staging.display().to_string());
                        if let Some(staging) = &staging {
                            std::fs::create_dir_all(staging).unwrap();
                            node.node_stage_volume(NodeStageVolumeRequest {
                                volume_id: v.volume_id.clone(),
                                staging_target_path: staging.clone(),
                                volume_capability: Some(rw()),
                                ..Default::default()
                            })
                            .await?;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        let publish = NodePublishVolumeRequest {
                            volume_id: v.volume_id.clone(),
                            staging_target_path: staging.clone().unwrap_or_default(),
                            target_path: target.display().to_string(),
                            volume_capability: Some(rw()),
                            ..Default::default()
                        };
                        node.node_publish_volume(publish).await?;
                        let unpublish = NodeUnpublishVolumeRequest {
                            volume_id: v.volume_id.clone(),
                            target_path: target.display().to_string(),
                        };
                        node.node_unpublish_volume(unpublish).await?;
                        done.fetch_add(2, Ordering::Relaxed);
                        if let Some(staging) = staging {
                            node.node_unstage_volume(NodeUnstageVolumeRequest {
                                volume_id: v.volume_id.clone(),
                                staging_target_path: staging.clone(),
                            })
                            .await?;
                            done.fetch_add(1, Ordering::Relaxed);
                            let _ = std::fs::remove_dir(&staging);
                        }
                        controller
                            .delete_volume(DeleteVolumeRequest {
                                volume_id: v.volume_id,
                                secrets: Default::default(),
                            })
                            .await?;
                        done.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    .await;
                    if let Err(e) = result {
                        eprintln!("soak-{i}: {e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
    });
    stop.store(true, Ordering::Relaxed);
    for t in flex {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let mut samples = sampler.join().unwrap();
    samples.push(sample(pid, &store, started, done.load(Ordering::Relaxed)));
    let csv: String = std::iter::once("seconds,calls,rss_kb,fds,store_kb\n".to_owned())
        .chain(samples.iter().map(|s| {
            format!(
                "{:.1},{},{},{},{}\n",
                s.at, s.done, s.rss_kb, s.fds, s.store_kb
            )
        }))
        .collect();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/soak-{driver}.csv"));
    std::fs::write(&out, csv).unwrap();

    let warm = samples[samples.len() / 10];
    let end = *samples.last().unwrap();
    let peak_rss = samples.iter().map(|s| s.rss_kb).max().unwrap();
    let peak_fds = samples.iter().map(|s| s.fds).max().unwrap();
    // Growth is what a leak looks like; ending lower is not one.
    let within = |warm: f64, end: f64| end <= warm * 1.10;
    let calls = done.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    let leftover = mounts_under(f.dir.path()).len() + loops_under(f.dir.path()).len();
    let ok = errors == 0
        && leftover == 0
        && within(warm.rss_kb as f64, end.rss_kb as f64)
        && within(warm.fds as f64, end.fds as f64);
    let what = if ephemeral {
        "ephemeral CSI volumes"
    } else {
        "CSI volumes and Flex cycles beside them"
    };
    println!("soak: {driver}: {n} {what}: {calls} calls in {elapsed:.1?} ({:.0} calls/s), {errors} errors, {leftover} mounts or loop devices left", calls as f64 / elapsed.as_secs_f64());
    println!(
        "soak: RSS start {} KB, after warm-up {} KB, peak {peak_rss} KB, end {} KB",
        samples[0].rss_kb, warm.rss_kb, end.rss_kb
    );
    println!(
        "soak: descriptors start {}, after warm-up {}, peak {peak_fds}, end {}",
        samples[0].fds, warm.fds, end.fds
    );
    println!(
        "soak: store {} KB after warm-up, {} KB at the end; samples in {}",
        warm.store_kb,
        end.store_kb,
        out.display()
    );
    println!("soak: {}", if ok { "ok" } else { "FAILED (see above)" });
    drop(serve);
    if !ok {
        std::process::exit(1);
    }
}
