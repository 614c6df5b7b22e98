//! The conformance sweep ([`wasmvol::conformance`]) against a fixture's
//! driver, as the end-to-end suites run it: every row must pass, exactly
//! the rows named may be skipped, and nothing may be left mounted or
//! attached beneath the fixture.

use wasmvol::conformance::{self, Profile, Report, Verdict};

use crate::{loops_under, mounts_under, Fixture, ServeProcess};

/// Runs the sweep against the fixture's driver and checks every row passed,
/// exactly `skipped` (RPC, spec) rows were skipped, and nothing is left
/// mounted or attached.
pub async fn sweep(
    f: &Fixture,
    profile: impl FnOnce(Profile) -> Profile,
    skipped: &[(&str, &str)],
) {
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
