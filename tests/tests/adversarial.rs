//! A hostile driver tries, one attempt per test, to get out of its sandbox.
//! Each attempt must be denied or contained, be in the audit log as denied,
//! leave the host unchanged, and the next honest call must succeed.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wasmvol::bindings::DriverError;
use wasmvol::call::{CallError, Operation, Outcome};
use wasmvol::runtime::sync_calls::SyncCalls;
use wasmvol::runtime::Runtime;
use wasmvol_tests::{Fixture, FixtureGrants};

fn fixture(grants: FixtureGrants) -> (Fixture, Runtime) {
    // The adversary imports the device interface too, so it needs that grant.
    let f = Fixture::new(
        "adversary",
        FixtureGrants {
            device: true,
            ..grants
        },
    );
    std::fs::write(f.outside().join("passwd"), b"root:x:0:0").unwrap();
    let rt = f.runtime();
    (f, rt)
}

fn attack_create(rt: &Runtime, name: &str) -> Result<Outcome, CallError> {
    let req = json!({
        "name": name, "capacity_range": null, "volume_capabilities": [], "parameters": [],
        "secrets": [], "content_source": null, "accessibility_requirements": null, "mutable_parameters": []
    });
    rt.call(
        "adversary",
        name,
        Operation::from_json("create-volume", req).unwrap(),
    )
}

fn attack_publish(rt: &Runtime, target: &Path, attack: &str) -> Result<Outcome, CallError> {
    let req = json!({
        "target_path": target, "volume_id": attack, "publish_context": [],
        "volume_capability": {"access_type": {"Mount": {"fs_type": "", "mount_flags": [], "volume_mount_group": ""}}, "access_mode": "SingleNodeWriter"},
        "readonly": false, "secrets": [], "volume_context": []
    });
    rt.call(
        "adversary",
        attack,
        Operation::from_json("node-publish", req).unwrap(),
    )
}

/// The audit records of one request.
fn audit_of(f: &Fixture, request_id: &str) -> Vec<Value> {
    f.audit()
        .into_iter()
        .filter(|r| r["request_id"] == request_id)
        .collect()
}

/// Asserts a capability denial: the error, a `deny` audit record for the
/// operation, and nothing mounted.
fn assert_denied(
    f: &Fixture,
    request_id: &str,
    operation: &str,
    result: Result<Outcome, CallError>,
) {
    match result {
        Err(CallError::Driver(DriverError::PermissionDenied(_))) => {}
        other => panic!("{request_id}: expected permission-denied, got {other:?}"),
    }
    let records = audit_of(f, request_id);
    assert!(
        records
            .iter()
            .any(|r| r["operation"] == operation && r["decision"] == "deny"),
        "{request_id}: no deny record for {operation}: {records:#?}"
    );
    assert!(
        !records
            .iter()
            .any(|r| r["operation"] == operation && r["decision"] == "allow"),
        "{request_id}: {operation} was allowed: {records:#?}"
    );
    assert!(
        f.mounts().is_empty(),
        "{request_id}: mounted {:?}",
        f.mounts()
    );
}

/// Asserts a contained fault: the error kind, a `deny` call record.
fn assert_contained(
    f: &Fixture,
    request_id: &str,
    result: &Result<Outcome, CallError>,
    want: &str,
) {
    let err = match result {
        Err(e) => e.to_string(),
        Ok(o) => panic!("{request_id}: attack succeeded: {o:?}"),
    };
    assert!(err.contains(want), "{request_id}: {err}");
    let records = audit_of(f, request_id);
    let call = records
        .iter()
        .find(|r| r["operation"] == "call:create-volume")
        .unwrap_or_else(|| panic!("{request_id}: no call record: {records:#?}"));
    assert_eq!(call["decision"], "deny", "{call}");
    assert!(
        call["outcome"].as_str().unwrap().starts_with("contained:"),
        "{call}"
    );
}

/// The host is fine: the honest path still works and nothing leaked.
fn assert_host_unchanged_and_serving(f: &Fixture, rt: &Runtime) {
    assert_eq!(
        std::fs::read(f.outside().join("passwd")).unwrap(),
        b"root:x:0:0"
    );
    assert_eq!(std::fs::read_dir(f.outside()).unwrap().count(), 1);
    assert!(!Path::new("/etc/wasmvol-escaped").exists());
    assert!(!f.dir.path().join("escaped").exists());
    attack_create(rt, "legit").expect("an honest call after the attack");
    let target = f.target("after");
    attack_publish(rt, &target, "legit").expect("an honest mount after the attack");
    assert_eq!(f.mounts(), vec![target.clone()]);
    nix::mount::umount(&target).unwrap();
}

#[test]
fn binding_slash_onto_the_target_is_denied() {
    let (f, rt) = fixture(FixtureGrants::default());
    let t = f.target("t");
    assert_denied(
        &f,
        "bind-slash",
        "mount.bind-from-root",
        attack_publish(&rt, &t, "bind-slash"),
    );
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn binding_etc_onto_the_target_is_denied() {
    let (f, rt) = fixture(FixtureGrants::default());
    let t = f.target("t");
    assert_denied(
        &f,
        "bind-etc",
        "mount.bind-from-root",
        attack_publish(&rt, &t, "bind-etc"),
    );
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn binding_a_dotdot_path_is_denied() {
    let (f, rt) = fixture(FixtureGrants::default());
    let t = f.target("t");
    assert_denied(
        &f,
        "bind-dotdot",
        "mount.bind-from-root",
        attack_publish(&rt, &t, "bind-dotdot"),
    );
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn binding_through_a_planted_symlink_is_denied() {
    let (f, rt) = fixture(FixtureGrants::default());
    std::os::unix::fs::symlink("/etc", f.root().join("link")).unwrap();
    let t = f.target("t");
    assert_denied(
        &f,
        "bind-symlink",
        "mount.bind-from-root",
        attack_publish(&rt, &t, "bind-symlink"),
    );
    assert_host_unchanged_and_serving(&f, &rt);
}

/// Waits for the `bind-swapped` attack to say it checked and now waits.
fn wait_for_ready(f: &Fixture) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f.root().join("ready").exists() {
        assert!(Instant::now() < deadline, "driver never got ready");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_symlink_swapped_in_after_the_check_is_not_followed() {
    let (f, rt) = fixture(FixtureGrants::default());
    std::fs::create_dir(f.root().join("vol")).unwrap();
    let t = f.target("t");
    let attack = std::thread::scope(|s| {
        // Spawned from this thread, so it shares this test's mount namespace.
        let call = s.spawn(|| attack_publish(&rt, &t, "bind-swapped"));
        wait_for_ready(&f);
        std::fs::rename(f.root().join("vol"), f.root().join("vol.real")).unwrap();
        std::os::unix::fs::symlink(f.outside(), f.root().join("vol")).unwrap();
        std::fs::write(f.root().join("swapped"), b"").unwrap();
        call.join().unwrap()
    });
    assert_denied(&f, "bind-swapped", "mount.bind-from-root", attack);
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn a_target_path_swapped_after_the_request_arrived_is_not_followed() {
    let (f, rt) = fixture(FixtureGrants::default());
    std::fs::create_dir(f.root().join("vol")).unwrap();
    let t = f.target("swap/t");
    let elsewhere = f.dir.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("t")).unwrap();
    let published = std::thread::scope(|s| {
        let call = s.spawn(|| attack_publish(&rt, &t, "bind-swapped"));
        wait_for_ready(&f);
        // While the driver runs, the target's parent becomes a symlink elsewhere.
        let parent = t.parent().unwrap();
        std::fs::rename(parent, parent.with_extension("old")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, parent).unwrap();
        std::fs::write(f.root().join("swapped"), b"").unwrap();
        call.join().unwrap()
    });
    published.expect("binding an honest directory is allowed");
    // The mount landed on the directory the request named when it arrived.
    let original = t.parent().unwrap().with_extension("old").join("t");
    // Nothing landed where the symlink points (it is under the fixture too).
    assert_eq!(f.mounts(), vec![original.clone()]);
    nix::mount::umount(&original).unwrap();
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn leaving_the_root_by_dotdot_is_denied() {
    let (f, rt) = fixture(FixtureGrants::default());
    assert_denied(
        &f,
        "escape-dotdot",
        "volumes.create-dir",
        attack_create(&rt, "escape-dotdot"),
    );
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn leaving_the_root_by_absolute_path_is_denied() {
    let (f, rt) = fixture(FixtureGrants::default());
    assert_denied(
        &f,
        "escape-absolute",
        "volumes.write-file",
        attack_create(&rt, "escape-absolute"),
    );
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn reading_and_writing_through_a_planted_symlink_is_denied() {
    let (f, rt) = fixture(FixtureGrants::default());
    std::os::unix::fs::symlink(f.outside(), f.root().join("link")).unwrap();
    assert_denied(
        &f,
        "escape-symlink-read",
        "volumes.read-file",
        attack_create(&rt, "escape-symlink-read"),
    );
    assert_denied(
        &f,
        "escape-symlink-write",
        "volumes.write-file",
        attack_create(&rt, "escape-symlink-write"),
    );
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn reading_a_host_file_through_wasi_fails() {
    let (f, rt) = fixture(FixtureGrants {
        wasi_preopen: true,
        ..FixtureGrants::default()
    });
    match attack_create(&rt, "wasi-read") {
        Err(CallError::Driver(DriverError::PermissionDenied(msg))) => {
            assert!(msg.starts_with("wasi:"), "{msg}")
        }
        other => panic!("WASI reached a host file: {other:?}"),
    }
    assert_host_unchanged_and_serving(&f, &rt);
    drop(rt);
    // The same in place on a tokio worker, as CSI calls run: WASI's
    // filesystem work blocks on tokio, which must not panic the worker.
    match attack_create_in_place(f.runtime(), "wasi-read") {
        Err(CallError::Driver(DriverError::PermissionDenied(msg))) => {
            assert!(msg.starts_with("wasi:"), "{msg}")
        }
        other => panic!("in place: {other:?}"),
    }
    assert_host_unchanged_and_serving(&f, &f.runtime());
}

#[test]
fn a_handle_kept_from_an_earlier_call_is_useless() {
    let (f, rt) = fixture(FixtureGrants::default());
    std::fs::create_dir_all(f.root().join("volumes/loot")).unwrap();
    let t = f.target("t");
    attack_publish(&rt, &t, "stash-handle").expect("stashing is allowed");
    let result = attack_create(&rt, "reuse-handle");
    assert_contained(&f, "reuse-handle", &result, "trapped");
    assert!(f.mounts().is_empty(), "{:?}", f.mounts());
    assert!(
        !audit_of(&f, "reuse-handle")
            .iter()
            .any(|r| r["operation"] == "mount.bind-from-root"),
        "the forged handle must never reach the mount capability"
    );
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn no_memory_outlives_a_call() {
    let (f, rt) = fixture(FixtureGrants::default());
    // The driver counts the calls its instance served in a static and gets
    // through only from the second on: every call must meet a fresh count.
    for round in 0..20 {
        match attack_create(&rt, "remember") {
            Err(CallError::Driver(DriverError::FailedPrecondition(m)))
                if m.contains("fresh instance") => {}
            other => panic!("call {round}: an instance remembered an earlier call: {other:?}"),
        }
    }
    assert_host_unchanged_and_serving(&f, &rt);
}

/// Runs `call`, which must end as past its `deadline_ms`, in less than `within`.
fn stopped_at_deadline(
    deadline_ms: u64,
    within: Duration,
    call: impl FnOnce() -> Result<Outcome, CallError>,
) -> Result<Outcome, CallError> {
    let started = Instant::now();
    let result = call();
    let took = started.elapsed();
    assert!(took < within, "took {took:?}, over {within:?}");
    assert!(
        matches!(result, Err(CallError::Deadline(ms)) if ms == deadline_ms),
        "{result:?}"
    );
    result
}

/// How soon after its deadline a stopped call must have returned.
const PROMPTLY: Duration = Duration::from_secs(3);

#[test]
fn an_endless_loop_hits_the_deadline() {
    let (f, rt) = fixture(FixtureGrants {
        deadline_ms: 300,
        ..FixtureGrants::default()
    });
    let result = stopped_at_deadline(300, PROMPTLY, || attack_create(&rt, "loop"));
    assert_contained(&f, "loop", &result, "deadline");
    assert_host_unchanged_and_serving(&f, &rt);
}

/// Every call a policy lets run at once gets an instance of its own: the
/// pool is sized from the drivers' concurrency, so a driver granted more
/// calls in flight than a fixed pool would hold (it held 128: past that,
/// calls failed as traps) never sees its calls fail for want of a slot.
/// Each call here sleeps until its deadline, so they hold their instances
/// at the same time.
#[test]
fn as_many_calls_run_at_once_as_the_policy_allows() {
    const CALLS: usize = 300;
    let (f, rt) = fixture(FixtureGrants {
        deadline_ms: 500,
        concurrency: CALLS as u32,
        ..FixtureGrants::default()
    });
    let start = std::sync::Barrier::new(CALLS);
    let results: Vec<_> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..CALLS)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    attack_create(&rt, "sleep")
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (i, result) in results.iter().enumerate() {
        assert!(
            matches!(result, Err(CallError::Deadline(500))),
            "call {i} of {CALLS}: {result:?}"
        );
    }
    assert_host_unchanged_and_serving(&f, &rt);
}

/// A driver waiting in a host call (a WASI sleep) never reaches an epoch
/// check; the wait itself ends at the call's deadline.
#[test]
fn sleeping_in_a_host_call_hits_the_deadline() {
    let (f, rt) = fixture(FixtureGrants {
        deadline_ms: 300,
        ..FixtureGrants::default()
    });
    let result = stopped_at_deadline(300, PROMPTLY, || attack_create(&rt, "sleep"));
    assert_contained(&f, "sleep", &result, "deadline");
    assert_host_unchanged_and_serving(&f, &rt);
    drop(rt);

    // The same in place on a tokio worker, as CSI calls run.
    let result = stopped_at_deadline(300, PROMPTLY, || {
        attack_create_in_place(f.runtime(), "sleep")
    });
    assert_contained(&f, "sleep", &result, "deadline");
}

/// A driver spinning in place on a tokio worker (as CSI calls run) does not
/// hold up the task that worker woke just before it, say the connection of
/// the socket the request came on: at the call's first epoch tick that task
/// goes to another worker.
#[test]
fn an_endless_loop_in_place_does_not_hold_up_the_worker_s_next_task() {
    let (_f, rt) = fixture(FixtureGrants {
        deadline_ms: 1000,
        ..FixtureGrants::default()
    });
    let rt = std::sync::Arc::new(rt);
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let calls = std::sync::Arc::new(SyncCalls::for_workers(2));
    let (waited, result) = workers.block_on(async move {
        tokio::spawn(async move {
            let (tx, rx) = tokio::sync::oneshot::channel::<Instant>();
            let woken = tokio::spawn(async move { rx.await.unwrap().elapsed() });
            // Let `woken` park, wake it from this worker, then spin in place.
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(Instant::now()).unwrap();
            let result = calls.run(move || attack_create(&rt, "loop")).await;
            (woken.await.unwrap(), result)
        })
        .await
        .unwrap()
    });
    assert!(
        matches!(result, Err(CallError::Deadline(1000))),
        "{result:?}"
    );
    assert!(
        waited < Duration::from_millis(250),
        "the woken task waited {waited:?} for the spinning call"
    );
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let (f, rt) = fixture(FixtureGrants {
        memory_bytes: 32 << 20,
        ..FixtureGrants::default()
    });
    let result = attack_create(&rt, "oom");
    assert!(matches!(result, Err(CallError::Memory(_))), "{result:?}");
    assert_contained(&f, "oom", &result, "memory limit");
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn a_trap_fails_only_that_call() {
    let (f, rt) = fixture(FixtureGrants::default());
    let result = attack_create(&rt, "trap");
    assert_contained(&f, "trap", &result, "trapped");
    assert_contained(
        &f,
        "trap",
        &result,
        "guest said: adversary panics on purpose",
    );
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn a_capability_outside_the_grants_is_refused_at_call_time_too() {
    // Read-only storage: the write capability is denied by the gate itself.
    let (f, rt) = fixture(FixtureGrants {
        storage: Some("read-only"),
        ..FixtureGrants::default()
    });
    assert_denied(
        &f,
        "legit",
        "volumes.create-dir",
        attack_create(&rt, "legit"),
    );
    assert!(!f.root().join("volumes/legit").exists());
}

#[test]
fn attaching_a_backing_file_outside_the_root_is_denied() {
    let (f, rt) = fixture(FixtureGrants::default());
    std::fs::write(f.outside().join("disk.img"), vec![0u8; 1 << 20]).unwrap();
    std::os::unix::fs::symlink(f.outside(), f.root().join("link")).unwrap();
    assert_denied(
        &f,
        "device-attach-outside",
        "device.attach",
        attack_create(&rt, "device-attach-outside"),
    );
    assert_denied(
        &f,
        "device-attach-symlink",
        "device.attach",
        attack_create(&rt, "device-attach-symlink"),
    );
    assert!(wasmvol_tests::loops_under(f.dir.path()).is_empty());
    std::fs::remove_file(f.outside().join("disk.img")).unwrap();
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn a_device_the_driver_did_not_attach_is_out_of_reach() {
    let (f, rt) = fixture(FixtureGrants::default());
    // Someone else (not the host for this driver) attaches a file in its root.
    let img = f.root().join("foreign.img");
    std::fs::write(&img, vec![0u8; 8 << 20]).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let foreign = wasmvol::sys::loopdev::LoopDevice::attach(&file, "someone-else").unwrap();
    match attack_create(&rt, "device-foreign") {
        Err(CallError::Driver(DriverError::NotFound(_))) => {}
        other => panic!("the foreign device was handed out: {other:?}"),
    }
    // Untouched: still attached to that file, and still blank.
    assert!(foreign.backing().unwrap().is_some());
    assert_eq!(wasmvol::sys::fstools::probe(&foreign.node()).unwrap(), None);
    // A forged handle never reaches the device capability.
    let result = attack_create(&rt, "device-forged");
    assert_contained(&f, "device-forged", &result, "trapped");
    assert!(!audit_of(&f, "device-forged")
        .iter()
        .any(|r| r["operation"] == "device.make-filesystem"));
    assert_eq!(wasmvol::sys::fstools::probe(&foreign.node()).unwrap(), None);
    foreign.detach().unwrap();
    std::fs::remove_file(&img).unwrap();
    assert_host_unchanged_and_serving(&f, &rt);
}

#[test]
fn tool_arguments_cannot_be_injected() {
    let (f, rt) = fixture(FixtureGrants::default());
    assert_denied(
        &f,
        "device-mkfs-label-inject",
        "device.make-filesystem",
        attack_create(&rt, "device-mkfs-label-inject"),
    );
    assert_denied(
        &f,
        "device-fs-not-granted",
        "device.make-filesystem",
        attack_create(&rt, "device-fs-not-granted"),
    );
    let t = f.target("t");
    assert_denied(
        &f,
        "device-mount-option-inject",
        "device.mount-onto",
        attack_publish(&rt, &t, "device-mount-option-inject"),
    );
    assert_denied(
        &f,
        "device-too-big",
        "device.create-backing-file",
        attack_create(&rt, "device-too-big"),
    );
    assert!(!f.root().join("huge.img").exists());
    assert!(wasmvol_tests::loops_under(f.dir.path()).is_empty());
    assert_host_unchanged_and_serving(&f, &rt);
}

/// Time a call waited in host calls counts against its deadline: a driver
/// that waits most of it and then spins is stopped at the deadline, not a
/// whole deadline after its first epoch check.
#[test]
fn time_spent_waiting_counts_against_the_deadline() {
    let (f, rt) = fixture(FixtureGrants {
        deadline_ms: 2100,
        ..FixtureGrants::default()
    });
    // It waits 2 s, then spins: the deadline ends it at ~2.1 s, a deadline
    // restarted at its first tick would end it at ~4.1 s. The bound sits
    // halfway, so a loaded CI machine's slower instantiation cannot cross it.
    let result = stopped_at_deadline(2100, Duration::from_millis(3100), || {
        attack_create(&rt, "sleep-then-loop")
    });
    assert_contained(&f, "sleep-then-loop", &result, "deadline");
    assert_host_unchanged_and_serving(&f, &rt);
}

/// Runs one attack the way the CSI front end runs calls: in place on a
/// worker of a two-worker tokio runtime.
fn attack_create_in_place(rt: Runtime, name: &'static str) -> Result<Outcome, CallError> {
    let rt = std::sync::Arc::new(rt);
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let calls = std::sync::Arc::new(SyncCalls::for_workers(2));
    workers
        .block_on(async move {
            tokio::spawn(async move { calls.run(move || attack_create(&rt, name)).await }).await
        })
        .expect("the call must not panic its worker")
}

/// What a trapping driver prints (its panic message) reaches the caller
/// from a tokio worker too, where WASI's blocking writes once panicked the
/// host (wasmtime-wasi's synchronous bindings block on tokio).
#[test]
fn a_trap_in_place_on_a_tokio_worker_fails_only_that_call() {
    let (f, _) = fixture(FixtureGrants::default());
    let result = attack_create_in_place(f.runtime(), "trap");
    assert_contained(
        &f,
        "trap",
        &result,
        "guest said: adversary panics on purpose",
    );
    assert_host_unchanged_and_serving(&f, &f.runtime());
}
