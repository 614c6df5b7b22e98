//! LVM benchmark (real-kernel VM only: `scripts/bench-vm.sh`).
//!
//! Two comparisons, each interleaved in one run in the guest, on the VM's
//! `kube_vg` (`scripts/vm/lvm-setup.sh`):
//! - CreateVolume + DeleteVolume of a 1 GiB thick volume through wasmvol
//!   (lvm driver, lvm capability: one `lvs` for ownership and the cap,
//!   `lvcreate` with the owner tag; `lvs` + `lvremove`) beside `lvcreate` +
//!   `lvremove` run directly;
//! - stage + publish + unpublish + unstage of an existing formatted volume
//!   through wasmvol beside the same steps natively, two ways: the mount
//!   syscalls themselves, and exec'd `mount`/`umount` as mount-utils based
//!   CSI drivers (TopoLVM, lvm-localpv) do them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use wasmvol::call::{Operation, Outcome};
use wasmvol::policy::file::{LvmEntry, LvmGroupEntry};
use wasmvol::runtime::Runtime;
use wasmvol_tests::{Fixture, FixtureGrants};

const GIB: u64 = 1 << 30;
const ROUNDS: usize = 15;
const WARMUP: usize = 2;

fn cap() -> serde_json::Value {
    json!({"access_type": {"Mount": {"fs_type": "ext4", "mount_flags": [], "volume_mount_group": ""}}, "access_mode": "SingleNodeWriter"})
}

fn call(rt: &Runtime, name: &str, v: serde_json::Value) -> Outcome {
    rt.call("lvm", "bench", Operation::from_json(name, v).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn lvm(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("DM_DISABLE_UDEV", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exec(program: &str, args: &[&str]) {
    let ok = Command::new(program).args(args).status().unwrap();
    assert!(ok.success(), "{program} {args:?} failed");
}

fn create_delete(rt: &Runtime, name: &str) {
    let create = json!({"name": name, "capacity_range": {"required_bytes": GIB, "limit_bytes": 0},
        "volume_capabilities": [cap()], "parameters": [["volumegroup", "kube_vg"]], "secrets": [],
        "content_source": null, "accessibility_requirements": null, "mutable_parameters": []});
    let Outcome::Volume(v) = call(rt, "create-volume", create) else {
        panic!("create-volume answered something else")
    };
    call(
        rt,
        "delete-volume",
        json!({"volume_id": v.volume_id, "secrets": []}),
    );
}

/// `lvcreate` of the native side's 1 GiB thick volume.
fn native_create() {
    lvm(&[
        "lvcreate",
        "-q",
        "-y",
        "-L",
        "1G",
        "-n",
        "bench-native",
        "kube_vg",
    ]);
}

fn native_create_delete() {
    native_create();
    lvm(&["lvremove", "-q", "-y", "kube_vg/bench-native"]);
}

fn stage_cycle(rt: &Runtime, id: &str, staging: &Path, target: &Path) {
    call(
        rt,
        "node-stage",
        json!({"target_path": staging, "volume_id": id, "publish_context": [], "volume_capability": cap(), "secrets": [], "volume_context": []}),
    );
    call(
        rt,
        "node-publish",
        json!({"target_path": target, "staging_path": staging, "volume_id": id, "publish_context": [], "volume_capability": cap(), "readonly": false, "secrets": [], "volume_context": []}),
    );
    call(
        rt,
        "node-unpublish",
        json!({"target_path": target, "volume_id": id}),
    );
    call(
        rt,
        "node-unstage",
        json!({"target_path": staging, "volume_id": id}),
    );
}

/// The node steps as mount-utils does them: exec `mount` and `umount`.
fn native_exec_cycle(dev: &str, staging: &str, target: &str) {
    exec("mount", &["-t", "ext4", "-o", "nosuid,nodev", dev, staging]);
    exec("mount", &["--bind", staging, target]);
    exec("umount", &[target]);
    exec("umount", &[staging]);
}

struct Samples(Vec<Duration>);

impl Samples {
    fn median(&mut self) -> Duration {
        self.0.sort();
        self.0[self.0.len() / 2]
    }
    fn p90(&mut self) -> Duration {
        self.0.sort();
        self.0[self.0.len() * 9 / 10]
    }
}

fn timed(samples: &mut Samples, round: usize, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    if round >= WARMUP {
        samples.0.push(t.elapsed());
    }
}

fn line(what: &str, s: &mut Samples) {
    println!(
        "{what:<60} median {:>10.1?}  p90 {:>10.1?}",
        s.median(),
        s.p90()
    );
}

fn ratio(what: &str, a: &mut Samples, b: &mut Samples) {
    let r = a.median().as_secs_f64() / b.median().as_secs_f64();
    let verdict = if r <= 1.2 {
        "ok (budget 1.2x)"
    } else {
        "OVER BUDGET 1.2x"
    };
    println!("{what:<60} {r:.2}x  {verdict}");
}

fn main() {
    let f = Fixture::new(
        "lvm",
        FixtureGrants {
            mount: true,
            storage: None,
            state_quota: None,
            lvm: Some(LvmEntry {
                groups: vec![LvmGroupEntry {
                    name: "kube_vg".into(),
                    thin_pools: Vec::new(),
                    max_bytes: 4 * GIB,
                }],
            }),
            deadline_ms: 120_000,
            ..FixtureGrants::default()
        },
    );
    let rt = f.runtime();

    // Interleaved in blocks: any commit the host did not make (here the
    // native side's) makes the host list the group again, once, so cycle
    // by cycle alternation measures a group someone else changes between
    // every call, and blocks measure a group the host manages alone.
    for (what, block) in [
        ("another tool changes the group between calls", 1),
        ("the host alone manages the group (blocks of 5)", 5),
    ] {
        let (mut ours, mut native) = (Samples(Vec::new()), Samples(Vec::new()));
        let mut tools = 0;
        let mut round = 0;
        while round < ROUNDS + WARMUP {
            for i in round..round + block {
                let before = wasmvol::sys::fstools::runs();
                timed(&mut ours, i, || create_delete(&rt, &format!("bench-{i}")));
                if i >= WARMUP {
                    tools += wasmvol::sys::fstools::runs() - before;
                }
            }
            for i in round..round + block {
                timed(&mut native, i, native_create_delete);
            }
            round += block;
        }
        println!("{what}:");
        println!(
            "{:<60} {:.1} (natively 2)",
            "  LVM tools run by the host per create+delete",
            tools as f64 / ours.0.len() as f64
        );
        line("  LVM create+delete 1 GiB thick via wasmvol", &mut ours);
        line("  the same with lvcreate + lvremove", &mut native);
        ratio(
            "  LVM create+delete ratio (medians)",
            &mut ours,
            &mut native,
        );
    }

    // One formatted volume each side, then the node steps on it.
    let create = json!({"name": "bench-node", "capacity_range": {"required_bytes": GIB, "limit_bytes": 0},
        "volume_capabilities": [cap()], "parameters": [["volumegroup", "kube_vg"]], "secrets": [],
        "content_source": null, "accessibility_requirements": null, "mutable_parameters": []});
    let Outcome::Volume(v) = call(&rt, "create-volume", create) else {
        panic!("create-volume answered something else")
    };
    let dirs = ["staging", "target", "native-staging", "native-target"].map(|d| {
        let p = f.dir.path().join(d);
        std::fs::create_dir_all(&p).unwrap();
        p
    });
    let [staging, target, n_staging, n_target] = &dirs;
    let t = Instant::now();
    stage_cycle(&rt, &v.volume_id, staging, target);
    println!(
        "{:<60} {:>10.1?}",
        "first node cycle, with mkfs.ext4 of 1 GiB",
        t.elapsed()
    );
    native_create();
    let dev = Path::new("/dev/kube_vg/bench-native");
    exec("mkfs.ext4", &["-q", "-F", dev.to_str().unwrap()]);

    let (mut ours, mut sys, mut exec_) = (
        Samples(Vec::new()),
        Samples(Vec::new()),
        Samples(Vec::new()),
    );
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let mut tools = 0;
    for round in 0..ROUNDS + WARMUP {
        let before = wasmvol::sys::fstools::runs();
        timed(&mut ours, round, || {
            stage_cycle(&rt, &v.volume_id, staging, target)
        });
        if round >= WARMUP {
            tools += wasmvol::sys::fstools::runs() - before;
        }
        timed(&mut sys, round, || {
            wasmvol_tests::native_node_cycle(
                dev,
                n_staging,
                n_target,
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            )
        });
        timed(&mut exec_, round, || {
            native_exec_cycle(&s(dev), &s(n_staging), &s(n_target))
        });
    }
    println!(
        "{:<60} {:.1}",
        "tools run by the host per node cycle",
        tools as f64 / ROUNDS as f64
    );
    line("LVM stage+publish+unpublish+unstage via wasmvol", &mut ours);
    line("the same with the mount syscalls", &mut sys);
    line(
        "the same with exec'd mount/umount (mount-utils)",
        &mut exec_,
    );
    ratio(
        "LVM node cycle ratio vs syscalls (medians)",
        &mut ours,
        &mut sys,
    );
    ratio(
        "LVM node cycle ratio vs exec'd mount",
        &mut ours,
        &mut exec_,
    );

    call(
        &rt,
        "delete-volume",
        json!({"volume_id": v.volume_id, "secrets": []}),
    );
    lvm(&["lvremove", "-q", "-y", "kube_vg/bench-native"]);
    assert!(wasmvol_tests::mounts_under(f.dir.path()).is_empty());
}
