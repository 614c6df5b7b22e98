//! Signed components: a vendor key made and used with the CLI as a vendor
//! would (`wasmvol key`, `sign`, `verify`), a policy that trusts the key
//! (`signed_by`) instead of pinning one digest, and every way a component
//! can fail it: unsigned, one byte changed, signed by another key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wasmvol::csi::proto::identity_client::IdentityClient;
use wasmvol::csi::proto::GetPluginInfoRequest;
use wasmvol::runtime::Runtime;
use wasmvol_tests::{
    component, csi_channel, sha256_file, wasmvol_bin, Fixture, FixtureGrants, ServeProcess,
};

fn cli(args: &[&str]) -> Output {
    Command::new(wasmvol_bin()).args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A vendor's key pair in `dir`: (secret key file, public key file).
fn vendor_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    ok(cli(&["key", "--out", s(&prefix)]));
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

/// `source` signed by `key`, written to `out`.
fn signed(source: &Path, key: &Path, out: &Path) {
    let said = ok(cli(&["sign", "--key", s(key), s(source), "--out", s(out)]));
    assert!(said.contains("signed"), "{said}");
}

fn start_error(f: &Fixture) -> String {
    match Runtime::start(&f.policy(), None) {
        Ok(_) => panic!("the component loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_policy_that_trusts_a_vendor_key_loads_what_it_signed_and_nothing_else() {
    let g = FixtureGrants::default();
    let f = Fixture::new("hostpath", g.clone());
    let dir = f.dir.path();
    let (secret, public) = vendor_key(dir, "vendor");
    let (other_secret, _) = vendor_key(dir, "other");
    let wasm = dir.join("hostpath.wasm");
    signed(&component("hostpath"), &secret, &wasm);

    // The vendor checks it, as an operator's pipeline would.
    let said = ok(cli(&["verify", "--key", s(&public), s(&wasm)]));
    assert!(said.contains("trusted"), "{said}");
    let secret_text = std::fs::read_to_string(&secret).unwrap();
    assert!(
        !said.contains(secret_text.trim().trim_start_matches("ed25519-secret:")),
        "no secret printed"
    );

    // Trusted by key file: loads, and reports its own digest.
    f.write_signed_policy(&wasm, &[s(&public).to_owned()], None, &g);
    let rt = Runtime::start(&f.policy(), None).expect("a signed component loads");
    assert_eq!(
        rt.driver("hostpath").unwrap().digest().to_hex(),
        sha256_file(&wasm)
    );
    drop(rt);
    // Trusted by the key itself, and with a digest pin too: both must hold.
    let key_text = std::fs::read_to_string(&public).unwrap().trim().to_owned();
    let trusted = std::slice::from_ref(&key_text);
    f.write_signed_policy(&wasm, trusted, Some(&sha256_file(&wasm)), &g);
    Runtime::start(&f.policy(), None).expect("signed and pinned");
    f.write_signed_policy(
        &wasm,
        trusted,
        Some(&sha256_file(&component("hostpath"))),
        &g,
    );
    assert!(
        start_error(&f).contains("sha256"),
        "the digest pin still holds"
    );

    // Unsigned.
    let unsigned = dir.join("unsigned.wasm");
    std::fs::copy(component("hostpath"), &unsigned).unwrap();
    f.write_signed_policy(&unsigned, trusted, None, &g);
    let e = start_error(&f);
    assert!(e.contains("refused") && e.contains("not signed"), "{e}");
    assert_eq!(
        cli(&["verify", "--key", s(&public), s(&unsigned)])
            .status
            .code(),
        Some(1)
    );

    // One byte changed after signing, in the middle of the code.
    let tampered = dir.join("tampered.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&tampered, &bytes).unwrap();
    f.write_signed_policy(&tampered, trusted, None, &g);
    let e = start_error(&f);
    assert!(e.contains("does not match its bytes"), "{e}");
    let out = cli(&["verify", "--key", s(&public), s(&tampered)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // Signed, by a key the policy does not trust.
    let stranger = dir.join("stranger.wasm");
    signed(&component("hostpath"), &other_secret, &stranger);
    f.write_signed_policy(&stranger, trusted, None, &g);
    let e = start_error(&f);
    assert!(e.contains("not among the trusted keys"), "{e}");
    let out = cli(&["verify", "--key", s(&public), s(&stranger)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // A `signed_by` entry that is no key is refused when the policy is read.
    std::fs::write(dir.join("bad.pub"), "not a key\n").unwrap();
    f.write_signed_policy(&wasm, &["bad.pub".into()], None, &g);
    let e = wasmvol::policy::Policy::load(&f.policy_path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("signed_by") && e.contains("bad.pub"), "{e}");
}

async fn plugin_version(f: &Fixture) -> String {
    IdentityClient::new(csi_channel(&f.csi_socket()).await)
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .vendor_version
}

/// The vendor's roll-out: a new release signed by the same key is dropped
/// at the same path; a reload serves it with the policy untouched. A file
/// swapped in that the key did not sign is refused, and the release before
/// serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_picks_up_a_new_signed_release_at_the_same_path_and_refuses_an_unsigned_one() {
    let g = FixtureGrants {
        csi: true,
        ..FixtureGrants::default()
    };
    let f = Fixture::new("hostpath", g.clone());
    let dir = f.dir.path();
    let (secret, public) = vendor_key(dir, "vendor");
    let wasm = dir.join("driver.wasm");
    signed(&component("hostpath"), &secret, &wasm);
    f.write_signed_policy(&wasm, &[s(&public).to_owned()], None, &g);
    let _serve = ServeProcess::start(&f);
    assert_eq!(plugin_version(&f).await, "0.1.0");
    let reload = || cli(&["reload", "--config", s(&f.policy_path)]);

    signed(&component("hostpath-next"), &secret, &wasm);
    let said = ok(reload());
    assert!(
        said.contains("0.1.0") && said.contains("-> 0.2.0"),
        "{said}"
    );
    assert_eq!(plugin_version(&f).await, "0.2.0");

    std::fs::copy(component("hostpath"), &wasm).unwrap();
    let out = reload();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not signed"),
        "{out:?}"
    );
    assert_eq!(
        plugin_version(&f).await,
        "0.2.0",
        "the signed release serves on"
    );
}
