//! The CSI spec's "MUST fail with" and idempotency sentences
//! ([`wasmvol::conformance`]) against each bundled local driver, each over
//! the real socket of its own `wasmvol serve`. The rows follow what each
//! driver advertises; each test also pins which rows its driver skips, so a
//! capability that silently disappears fails here too.

use wasmvol::conformance::Profile;
use wasmvol_tests::spec_sweep::sweep;
use wasmvol_tests::{Fixture, FixtureGrants};

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
