//! Core runtime benchmarks (issue: core runtime).
//!
//! - a fresh-instance call of a no-op export (identity.info);
//! - hostpath publish + unpublish through the runtime, beside the same bind
//!   mount + umount done natively, in the same run;
//! - `wasmvol serve` start with three drivers whose artifacts are cached.
//!
//! Runs as root; mounts happen in a private mount namespace of its own.
//! `WASMVOL_BENCH_PROFILE=noop|pair` loops one workload instead, for `perf record`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use wasmvol::call::Operation;
use wasmvol_bench::{measure, report};
use wasmvol_tests::{component, sha256_file, wasmvol_bin, Fixture, FixtureGrants};

/// Like [`measure`] for two functions run alternately.
fn measure_interleaved(
    n: usize,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> ((Duration, Duration), (Duration, Duration)) {
    for _ in 0..n / 10 {
        a();
        b();
    }
    let (mut ta, mut tb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        a();
        ta.push(t.elapsed());
        let t = Instant::now();
        b();
        tb.push(t.elapsed());
    }
    ta.sort();
    tb.sort();
    ((ta[n / 2], ta[n * 9 / 10]), (tb[n / 2], tb[n * 9 / 10]))
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
    // Both sides alternate iteration by iteration, so they see the same
    // machine (this is a VM with noisy neighbours).
    let source = f.root().join("volumes").join(&vol);
    let (wasm_pair, native_pair) = measure_interleaved(
        1000,
        || {
            rt.call("hostpath", "bench", publish.clone()).unwrap();
            rt.call("hostpath", "bench", unpublish.clone()).unwrap();
        },
        || {
            native_bind(&source, &target);
            nix::mount::umount(&target).unwrap();
        },
    );
    report("hostpath publish + unpublish via wasmvol", wasm_pair, None);
    report("native bind mount + umount (same run)", native_pair, None);
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

/// Time from spawning `wasmvol serve` with three drivers to its ready line.
fn serve_start(f: &Fixture) {
    let state = f.dir.path().join("serve-state");
    let mut text = format!("[host]\nstate_dir = \"{}\"\n", state.display());
    for (name, comp) in [
        ("hostpath", "hostpath"),
        ("hostpath-b", "hostpath"),
        ("loopfs", "loopfs"),
    ] {
        let path = component(comp);
        text += &format!(
            "\n[[driver]]\nname = \"{name}\"\ncomponent = \"{}\"\nsha256 = \"{}\"\n[driver.grants]\nmount = true\nstate_quota_bytes = 65536\nstorage = {{ root = \"{}\", access = \"read-write\" }}\ndevice = {{ max_file_bytes = 1073741824 }}\nfs_types = [\"ext4\"]\n",
            path.display(),
            sha256_file(&path),
            f.root().display()
        );
    }
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
