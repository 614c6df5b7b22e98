//! The CSI spec's "MUST fail with" and idempotency sentences
//! ([`wasmvol::conformance`]) against each bundled local driver, each over
//! the real socket of its own `wasmvol serve`. The rows follow what each
//! driver advertises; each test also pins which rows its driver skips, so a
//! capability that silently disappears fails here too.

use wasmvol::conformance::{self, Profile, Report, Verdict};
use wasmvol_tests::{loops_under, mounts_under, Fixture, FixtureGrants, ServeProcess};

/// Runs the sweep against the fixture's driver and checks every row passed,
/// exactly `skipped` (RPC, spec) rows were skipped, and nothing is left
/// mounted or attached.
async fn sweep(f: &Fixture, profile: impl FnOnce(Profile) -> Profile, skipped: &[(&str, &str)]) {
    let serve = ServeProcess::start(f);
    let channel = conformance::connect(&serve.socket, None)
        .await
        .expect("connect");
    let report: Report = conformance::run(
        channel,
        profile(Profile::new(&f.dir.path().join("kubelet"))),
    )
    .await;
    drop(serve);
    let failed: Vec<String> = report
        .failures()
        .map(|r| format!("{}: {}: {:?}", r.rpc, r.spec, r.verdict))
        .collect();
    let mut got_skipped: Vec<(String, String)> = report
        .rows
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Skipped(_)))
        .map(|r| (r.rpc.clone(), r.spec.clone()))
        .collect();
    got_skipped.sort();
    let mut want_skipped: Vec<(String, String)> = skipped
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    want_skipped.sort();
    let mounts = mounts_under(f.dir.path());
    let loops = loops_under(f.dir.path());
    assert!(
        failed.is_empty() && mounts.is_empty() && loops.is_empty(),
        "{} rows failed:\n{}\nleft: mounts {mounts:?}, loops {loops:?}\n{}",
        failed.len(),
        failed.join("\n"),
        report.table()
    );
    assert_eq!(got_skipped, want_skipped, "{}", report.table());
    assert!(report.passed());
}

fn read_only_off(mut p: Profile) -> Profile {
    p.mutable_parameters
        .insert("readOnly".into(), "false".into());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostpath_answers_every_row_as_the_spec_says() {
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            csi: true,
            ..FixtureGrants::default()
        },
    );
    // hostpath's volumes need no attaching: no ControllerPublishVolume.
    sweep(
        &f,
        read_only_off,
        &[("ControllerPublishVolume", "every row")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopfs_answers_every_row_as_the_spec_says() {
    let f = Fixture::new(
        "loopfs",
        FixtureGrants {
            csi: true,
            device: true,
            deadline_ms: 60_000,
            ..FixtureGrants::default()
        },
    );
    sweep(&f, read_only_off, &[]).await;
}
