//! Core runtime benchmarks (issue: core runtime).
//!
//! - a fresh-instance call of a no-op export (identity.info);
//! - hostpath publish + unpublish through the runtime, beside the same bind
//!   mount + umount done natively and beside the host's own mount syscalls
//!   done natively (the floor its security rules set), in the same run,
//!   each split into its two halves;
//! - `wasmvol serve` start with three drivers whose artifacts are cached.
//!
//! Runs as root; mounts happen in a private mount namespace of its own.
//! `WASMVOL_BENCH_PROFILE=noop|pair` loops one workload instead, for `perf record`.

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use wasmvol::call::Operation;
use wasmvol_bench::{measure, report};
use wasmvol_tests::{component, sha256_file, wasmvol_bin, Fixture, FixtureGrants};

/// Median and 90th percentile of a pair of operations, and the median of each half.
struct PairTimes {
    total: (Duration, Duration),
    first: Duration,
    second: Duration,
}

/// Times `n` runs of each workload, round-robin iteration by iteration so
/// every workload sees the same machine (this is a VM with noisy
/// neighbours), after `n / 10` warm-up rounds. A workload runs its two
/// halves (mount, unmount) and returns when the second one started.
fn measure_pairs<const N: usize>(
    n: usize,
    mut work: [&mut dyn FnMut() -> Instant; N],
) -> [PairTimes; N] {
    for _ in 0..n / 10 {
        work.iter_mut().for_each(|w| {
            w();
        });
    }
    let mut times: [Vec<(Duration, Duration)>; N] = std::array::from_fn(|_| Vec::with_capacity(n));
    for _ in 0..n {
        for (w, t) in work.iter_mut().zip(times.iter_mut()) {
            let start = Instant::now();
            let half = w();
            t.push((half - start, half.elapsed()));
        }
    }
    times.map(|mut t| {
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let mut first: Vec<_> = t.iter().map(|h| h.0).collect();
        let mut second: Vec<_> = t.iter().map(|h| h.1).collect();
        t.sort_by_key(|h| h.0 + h.1);
        let total = |i: usize| t[i].0 + t[i].1;
        PairTimes {
            total: (total(n / 2), total(n * 9 / 10)),
            first: median(&mut first),
            second: median(&mut second),
        }
    })
}

fn report_pair(name: &str, halves: (&str, &str), t: &PairTimes) {
    report(name, t.total, None);
    println!(
        "{:<52} {:>10.1?} + {:>8.1?}  (medians of each half)",
        format!("  {} + {}", halves.0, halves.1),
        t.first,
        t.second
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let f = Fixture::new("hostpath", FixtureGrants::default());
    let rt = f.runtime();

    let profile = std::env::var("WASMVOL_BENCH_PROFILE").unwrap_or_default();
    if profile == "noop" {
        for _ in 0..100_000 {
            rt.call("hostpath", "bench", Operation::Info).unwrap();
        }
        return;
    }
    let noop = measure(2000, || {
        rt.call("hostpath", "bench", Operation::Info).unwrap();
    });
    report(
        "fresh-instance call of identity.info",
        noop,
        Some(Duration::from_micros(50)),
    );

    // Publish + unpublish through the runtime.
    let create = json!({"name": "bench", "capacity_range": null, "volume_capabilities": [], "parameters": [],
        "secrets": [], "content_source": null, "accessibility_requirements": null, "mutable_parameters": []});
    let vol = match rt
        .call(
            "hostpath",
            "bench",
            Operation::from_json("create-volume", create).unwrap(),
        )
        .unwrap()
    {
        wasmvol::call::Outcome::Volume(v) => v.volume_id,
        o => panic!("{o:?}"),
    };
    let target = f.target("bench");
    let publish = Operation::from_json("node-publish", json!({
        "target_path": target, "volume_id": vol, "publish_context": [],
        "volume_capability": {"access_type": {"Mount": {"fs_type": "", "mount_flags": [], "volume_mount_group": ""}}, "access_mode": "SingleNodeWriter"},
        "readonly": false, "secrets": [], "volume_context": []})).unwrap();
    let unpublish = Operation::from_json(
        "node-unpublish",
        json!({"target_path": target, "volume_id": vol}),
    )
    .unwrap();
    if profile == "pair" {
        for _ in 0..20_000 {
            rt.call("hostpath", "bench", publish.clone()).unwrap();
            rt.call("hostpath", "bench", unpublish.clone()).unwrap();
        }
        return;
    }
    let source = f.root().join("volumes").join(&vol);
    let root = wasmvol::runtime::driver::LoadedDriver::open_root("bench", &f.root()).unwrap();
    let [wasm_pair, native_pair, host_mechanics] = measure_pairs(
        1000,
        [
            &mut || {
                rt.call("hostpath", "bench", publish.clone()).unwrap();
                let half = Instant::now();
                rt.call("hostpath", "bench", unpublish.clone()).unwrap();
                half
            },
            &mut || {
                native_bind(&source, &target);
                let half = Instant::now();
                nix::mount::umount(&target).unwrap();
                half
            },
            &mut || {
                host_bind(&root, &vol, &target);
                let half = Instant::now();
                host_unmount(&target);
                half
            },
        ],
    );
    report_pair(
        "hostpath publish + unpublish via wasmvol",
        ("publish", "unpublish"),
        &wasm_pair,
    );
    report_pair(
        "native bind mount + umount (same run)",
        ("mount", "umount"),
        &native_pair,
    );
    report_pair(
        "the host's mount syscalls alone, natively",
        ("bind by fd", "umount"),
        &host_mechanics,
    );
    let (wasm_pair, native_pair) = (wasm_pair.total, native_pair.total);
    let ratio = wasm_pair.0.as_secs_f64() / native_pair.0.as_secs_f64();
    println!(
        "{:<52} {ratio:.2}x native  {}",
        "publish + unpublish ratio (medians)",
        if ratio <= 2.0 {
            "ok (budget 2x)"
        } else {
            "OVER BUDGET 2x"
        }
    );

    serve_start(&f);
}

fn native_bind(source: &Path, target: &Path) {
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
}

/// The syscalls the host itself makes for hostpath's publish, whatever the
/// driver does: the target opened as a handle, the source resolved beneath
/// the storage root, and a bind by file descriptor (`open_tree` +
/// `move_mount`). The floor of publish under the security rules.
fn host_bind(root: &cap_std::fs::Dir, vol: &str, target: &Path) {
    let target = wasmvol::sys::mount::open_dir_path(target).unwrap();
    let source: std::os::fd::OwnedFd = root
        .open_dir(Path::new("volumes").join(vol))
        .unwrap()
        .into_std_file()
        .into();
    wasmvol::sys::mount::bind(source.as_fd(), target.as_fd(), Default::default()).unwrap();
}

/// Unpublish's own syscalls: the target opened as a handle, then `umount`.
fn host_unmount(target: &Path) {
    drop(wasmvol::sys::mount::open_dir_path(target).unwrap());
    assert!(wasmvol::sys::mount::unmount(target).unwrap());
}

/// Time from spawning `wasmvol serve` with three drivers to its ready line.
fn serve_start(f: &Fixture) {
    let state = f.dir.path().join("serve-state");
    use wasmvol::policy::file::*;
    let drivers = [
        ("hostpath", "hostpath"),
        ("hostpath-b", "hostpath"),
        ("loopfs", "loopfs"),
    ]
    .map(|(name, comp)| {
        let path = component(comp);
        DriverEntry {
            name: name.into(),
            sha256: Some(sha256_file(&path)),
            signed_by: Vec::new(),
            component: path,
            grants: GrantsEntry {
                mount: true,
                state_quota_bytes: Some(65536),
                storage: Some(StorageEntry {
                    root: f.root(),
                    access: wasmvol::policy::StorageAccess::ReadWrite,
                    wasi_preopen: false,
                }),
                device: Some(DeviceEntry {
                    max_file_bytes: 1 << 30,
                    max_devices: None,
                }),
                fs_types: vec!["ext4".into()],
                ..GrantsEntry::default()
            },
            ..DriverEntry::default()
        }
    });
    let text = PolicyFile {
        host: HostEntry {
            state_dir: state,
            ..HostEntry::default()
        },
        drivers: drivers.into(),
    }
    .to_toml();
    let policy = f.dir.path().join("serve.toml");
    std::fs::write(&policy, text).unwrap();
    let start_once = || {
        let t = Instant::now();
        let mut child = Command::new(wasmvol_bin())
            .args(["serve", "--config"])
            .arg(&policy)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut ready = None;
        for line in stderr.lines() {
            if line.unwrap().contains("wasmvol ready") {
                ready = Some(t.elapsed());
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        ready.expect("serve printed its ready line")
    };
    let first = start_once();
    println!(
        "{:<52} {first:>10.1?}  (compiles and caches)",
        "serve start, 3 drivers, cold cache"
    );
    let warm = measure(10, || {
        start_once();
    });
    report(
        "serve start, 3 drivers, cached artifacts",
        warm,
        Some(Duration::from_millis(200)),
    );
}
