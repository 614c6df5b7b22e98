//! Hot upgrade benchmark (issue: driver lifecycle).
//!
//! A `wasmvol serve` process runs hostpath over CSI while one client loops
//! CreateVolume + DeleteVolume. After a baseline without swaps, the policy
//! is switched between hostpath 0.1.0 and hostpath-next 0.2.0 and the host
//! sent SIGHUP, twenty times, with cached artifacts. Reported:
//!
//! - swap latency: from the signal until GetPluginInfo, polled in a tight
//!   loop on another connection, answers the new version (budget 100 ms);
//! - the load's calls during the swaps against their baseline median:
//!   the slowest, and how many took longer than twice the median (budget: none),
//!   split into the calls within 50 ms after a signal (those begun before the
//!   swap took effect ran beside the loading) and the calls between those
//!   windows, which show this machine's own noise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmvol::csi::proto::controller_client::ControllerClient;
use wasmvol::csi::proto::identity_client::IdentityClient;
use wasmvol::csi::proto::{DeleteVolumeRequest, GetPluginInfoRequest};
use wasmvol_tests::csi_requests::create_req;
use wasmvol_tests::{component, csi_channel, sha256_file, Fixture, FixtureGrants, ServeProcess};

const SWAPS: usize = 20;

/// Each CreateVolume and DeleteVolume the load made: when it started, how long it took.
type Calls = Arc<Mutex<Vec<(Instant, Duration)>>>;

async fn load(f: std::path::PathBuf, stop: Arc<AtomicBool>, calls: Calls) {
    let mut controller = ControllerClient::new(csi_channel(&f).await);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let t = Instant::now();
        let v = controller
            .create_volume(create_req(&format!("bench-{n}"), 1 << 20))
            .await
            .expect("CreateVolume")
            .into_inner()
            .volume
            .unwrap();
        let made = t.elapsed();
        let t2 = Instant::now();
        controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: v.volume_id,
                ..Default::default()
            })
            .await
            .expect("DeleteVolume");
        let mut c = calls.lock().unwrap();
        c.push((t, made));
        c.push((t2, t2.elapsed()));
    }
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn main() {
    let g = FixtureGrants {
        csi: true,
        ..FixtureGrants::default()
    };
    let f = Fixture::new("hostpath", g.clone());
    let versions = [component("hostpath"), component("hostpath-next")];
    let pin = |i: usize| f.write_policy(&versions[i], &sha256_file(&versions[i]), &g);
    // Both versions' artifacts cached: each served once before timing.
    pin(1);
    drop(ServeProcess::start(&f));
    // Each version's policy made up front: a swap writes one back, so that
    // hashing a component and rendering a policy in this process do not
    // take the CPU from the load just before the signal.
    let policies = [0, 1].map(|i| {
        pin(i);
        std::fs::read(&f.policy_path).expect("policy")
    });
    std::fs::write(&f.policy_path, &policies[0]).expect("policy");
    let serve = ServeProcess::start(&f);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let identity = IdentityClient::new(csi_channel(&f.csi_socket()).await);
        let version = || {
            let mut identity = identity.clone();
            async move {
                identity
                    .get_plugin_info(GetPluginInfoRequest {})
                    .await
                    .unwrap()
                    .into_inner()
                    .vendor_version
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let calls: Calls = Arc::default();
        let loader = tokio::spawn(load(f.csi_socket(), stop.clone(), calls.clone()));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let swaps_began = Instant::now();
        let mut took = Vec::new();
        let mut signals = Vec::new();
        // When each swap's new version first answered.
        let mut effects = Vec::new();
        for swap in 1..=SWAPS {
            let to = swap % 2;
            std::fs::write(&f.policy_path, &policies[to]).expect("policy");
            let want = ["0.1.0", "0.2.0"][to];
            let t = Instant::now();
            signals.push(t);
            serve.signal(nix::sys::signal::Signal::SIGHUP);
            while version().await != want {
                assert!(t.elapsed() < Duration::from_secs(10), "swap {swap} took no effect");
            }
            took.push(t.elapsed());
            effects.push(Instant::now());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stop.store(true, Ordering::Relaxed);
        loader.await.unwrap();

        let calls = calls.lock().unwrap().clone();
        let (before, during): (Vec<&(Instant, Duration)>, Vec<_>) =
            calls.iter().partition(|(at, _)| *at < swaps_began);
        let before: Vec<Duration> = before.iter().skip(100).map(|c| c.1).collect();
        let usual = median(before.clone());
        let over_before = before.iter().filter(|d| **d > usual * 2).count();
        let slowest = during.iter().map(|c| c.1).max().unwrap();
        let over = during.iter().filter(|c| c.1 > usual * 2).count();
        // Where the slow calls fall: a call overlapping the 50 ms after a
        // signal (the swap's window) against the calls of the same phase
        // between the windows, so the VM's own noise shows as such.
        let in_window = |(at, took): &&(Instant, Duration)| {
            signals.iter().any(|s| *at + *took >= *s && *at <= *s + Duration::from_millis(50))
        };
        let (near, between): (Vec<&(Instant, Duration)>, Vec<_>) =
            during.iter().copied().partition(in_window);
        let slow = |c: &[&(Instant, Duration)]| c.iter().filter(|c| c.1 > usual * 2).count();
        // A slow call of a window began before its swap took effect (it ran
        // beside the loading) or after (on the new version's first calls).
        let loading = near
            .iter()
            .filter(|c| c.1 > usual * 2)
            .filter(|(at, _)| {
                signals.iter().zip(&effects).any(|(s, e)| *at <= *e && *at + Duration::from_millis(50) >= *s)
            })
            .count();
        let pct = |n: usize, of: usize| n as f64 * 100.0 / of.max(1) as f64;
        took.sort();
        let budget = Duration::from_millis(100);
        println!(
            "{:<52} median {:>10.1?}  p90 {:>10.1?}  max {:>10.1?}  {}",
            "swap: SIGHUP until the new version answers",
            took[SWAPS / 2],
            took[SWAPS * 9 / 10],
            took[SWAPS - 1],
            if took[SWAPS - 1] <= budget { format!("ok (budget {budget:?})") } else { format!("OVER BUDGET {budget:?}") }
        );
        println!(
            "{:<52} usual median {usual:>8.1?}; during {SWAPS} swaps: {} calls, slowest {slowest:.1?}, {over} over 2x the median ({:.2}%)",
            "create/delete volume calls across the swaps",
            during.len(),
            pct(over, during.len())
        );
        println!(
            "{:<52} {} calls, {} over 2x ({:.2}%; {loading} begun before the swap took effect), slowest {:.1?}; between the windows: {} calls, {} over 2x ({:.2}%)",
            "  of them within 50 ms after a signal",
            near.len(),
            slow(&near),
            pct(slow(&near), near.len()),
            near.iter().map(|c| c.1).max().unwrap_or_default(),
            between.len(),
            slow(&between),
            pct(slow(&between), between.len())
        );
        println!(
            "{:<52} {} calls, slowest {:.1?}, {over_before} over 2x the median ({:.2}%)",
            "the same calls before any swap (the noise floor)",
            before.len(),
            before.iter().max().unwrap(),
            over_before as f64 * 100.0 / before.len() as f64
        );
    });
}
