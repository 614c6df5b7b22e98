//! Block volume benchmark (issue: block volumes).
//!
//! Stage + publish + unpublish + unstage of an existing 1 GiB ext4 loopfs
//! volume through wasmvol, beside the same steps done natively (the same
//! loop ioctls and mount syscalls, no wasm), interleaved in one run. The
//! first stage's mkfs is reported separately.
//!
//! Runs as root; mounts happen in a private mount namespace of its own.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use wasmvol::call::{Operation, Outcome};
use wasmvol::runtime::Runtime;
use wasmvol::sys::loopdev::LoopDevice;
use wasmvol_tests::{Fixture, FixtureGrants};

const GIB: u64 = 1 << 30;

fn cap() -> serde_json::Value {
    json!({"access_type": {"Mount": {"fs_type": "ext4", "mount_flags": [], "volume_mount_group": ""}}, "access_mode": "SingleNodeWriter"})
}

fn op(name: &str, v: serde_json::Value) -> Operation {
    Operation::from_json(name, v).unwrap()
}

fn call(rt: &Runtime, o: Operation) -> Outcome {
    rt.call("loopfs", "bench", o).unwrap()
}

fn cycle(rt: &Runtime, id: &str, staging: &Path, target: &Path) {
    call(
        rt,
        op(
            "node-stage",
            json!({"target_path": staging, "volume_id": id, "publish_context": [], "volume_capability": cap(), "secrets": [], "volume_context": []}),
        ),
    );
    call(
        rt,
        op(
            "node-publish",
            json!({"target_path": target, "staging_path": staging, "volume_id": id, "publish_context": [], "volume_capability": cap(), "readonly": false, "secrets": [], "volume_context": []}),
        ),
    );
    call(
        rt,
        op(
            "node-unpublish",
            json!({"target_path": target, "volume_id": id}),
        ),
    );
    call(
        rt,
        op(
            "node-unstage",
            json!({"target_path": staging, "volume_id": id}),
        ),
    );
}

/// The same steps natively: attach, mount ext4, bind, umount both, detach.
fn native_cycle(img: &Path, staging: &Path, target: &Path) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let dev = LoopDevice::attach(&file, "bench-native").unwrap();
    wasmvol_tests::native_node_cycle(&dev.node(), staging, target, nix::mount::MsFlags::empty());
    dev.detach().unwrap();
}

fn main() {
    let f = Fixture::new(
        "loopfs",
        FixtureGrants {
            device: true,
            deadline_ms: 120_000,
            ..FixtureGrants::default()
        },
    );
    let rt = f.runtime();
    let create = json!({"name": "bench", "capacity_range": {"required_bytes": GIB, "limit_bytes": 0},
        "volume_capabilities": [cap()], "parameters": [], "secrets": [], "content_source": null,
        "accessibility_requirements": null, "mutable_parameters": []});
    let Outcome::Volume(v) = call(&rt, op("create-volume", create)) else {
        panic!()
    };
    let (staging, target) = (f.dir.path().join("staging"), f.dir.path().join("target"));
    for d in [&staging, &target] {
        std::fs::create_dir_all(d).unwrap();
    }
    let t = Instant::now();
    cycle(&rt, &v.volume_id, &staging, &target);
    println!(
        "{:<52} {:>10.1?}  (first stage: attach + mkfs.ext4 of 1 GiB + mount, then the rest)",
        "first cycle, with mkfs",
        t.elapsed()
    );

    // A second 1 GiB ext4 image for the native side (same size, same fs).
    let native_img = f.dir.path().join("native.img");
    std::fs::File::create(&native_img)
        .unwrap()
        .set_len(GIB)
        .unwrap();
    wasmvol::sys::fstools::mkfs(&native_img, wasmvol::sys::fstools::Fs::Ext4, None).unwrap();
    let (ns, nt) = (f.dir.path().join("nstaging"), f.dir.path().join("ntarget"));
    for d in [&ns, &nt] {
        std::fs::create_dir_all(d).unwrap();
    }

    let n = 60;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..n + 5 {
        let t = Instant::now();
        cycle(&rt, &v.volume_id, &staging, &target);
        let wasm = t.elapsed();
        let t = Instant::now();
        native_cycle(&native_img, &ns, &nt);
        let native = t.elapsed();
        if i >= 5 {
            a.push(wasm);
            b.push(native);
        }
    }
    a.sort();
    b.sort();
    let med = |v: &[Duration]| v[v.len() / 2];
    println!(
        "{:<52} median {:>10.1?}  p90 {:>10.1?}",
        "stage+publish+unpublish+unstage via wasmvol",
        med(&a),
        a[n * 9 / 10]
    );
    println!(
        "{:<52} median {:>10.1?}  p90 {:>10.1?}",
        "the same natively (loop ioctls + mounts)",
        med(&b),
        b[n * 9 / 10]
    );
    let ratio = med(&a).as_secs_f64() / med(&b).as_secs_f64();
    println!(
        "{:<52} {ratio:.2}x native  {}",
        "block cycle ratio (medians)",
        if ratio <= 1.5 {
            "ok (budget 1.5x)"
        } else {
            "OVER BUDGET 1.5x"
        }
    );
    assert!(wasmvol_tests::mounts_under(f.dir.path()).is_empty());
    assert!(wasmvol_tests::loops_under(f.dir.path()).is_empty());
}
