//! A driver that does not match its policy is refused at load, with an error
//! that names the driver and what is wrong.

use std::process::Command;

use wasmvol::policy::Policy;
use wasmvol::runtime::Runtime;
use wasmvol_tests::{component, sha256_file, wasmvol_bin, Fixture, FixtureGrants};

fn start_error(f: &Fixture) -> String {
    match Runtime::start(&f.policy(), None) {
        Ok(_) => panic!("the driver was loaded"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_digest_mismatch_is_refused() {
    let f = Fixture::new("hostpath", FixtureGrants::default());
    let wrong = "ab".repeat(32);
    f.write_policy(&component("hostpath"), &wrong, &FixtureGrants::default());
    let err = start_error(&f);
    assert!(
        err.contains("driver `hostpath`")
            && err.contains(&wrong)
            && err.contains(&sha256_file(&component("hostpath"))),
        "{err}"
    );
}

#[test]
fn an_ungranted_import_is_refused() {
    let f = Fixture::new("hostpath", FixtureGrants::default());
    let no_mount = FixtureGrants {
        mount: false,
        ..FixtureGrants::default()
    };
    f.regrant(&no_mount);
    let err = start_error(&f);
    assert_eq!(
        err,
        "driver `hostpath`: imports `wasmvol:driver/mount@0.1.0`, which needs `grants.mount` in its policy"
    );
    let no_state = FixtureGrants {
        state_quota: None,
        ..FixtureGrants::default()
    };
    f.regrant(&no_state);
    assert!(
        start_error(&f).contains("needs `grants.state_quota_bytes`"),
        "{}",
        start_error(&f)
    );
}

#[test]
fn a_malformed_policy_names_file_and_line() {
    let f = Fixture::new("hostpath", FixtureGrants::default());
    let text = std::fs::read_to_string(&f.policy_path).unwrap();
    let broken = text.replace("mount = true", "mount = yes please");
    std::fs::write(&f.policy_path, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.starts_with("mount = yes"))
        .unwrap()
        + 1;
    let err = Policy::load(&f.policy_path).unwrap_err().to_string();
    let prefix = format!("{}:{line}:", f.policy_path.display());
    assert!(err.starts_with(&prefix), "{err} (want {prefix})");

    // The CLI says the same on one line and exits non-zero.
    let out = Command::new(wasmvol_bin())
        .args(["serve", "--config"])
        .arg(&f.policy_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("wasmvol: {prefix}")),
        "{stderr}"
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let f = Fixture::new("hostpath", FixtureGrants::default());
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "core.wasm",
            b"\0asm\x01\0\0\0",
            "is a core WebAssembly module",
        ),
        ("text.wasm", b"#!/bin/sh\necho hi\n", "magic number"),
        (
            "truncated.wasm",
            b"\0asm\x0d\0\x01\0\x01",
            "is not a WebAssembly component",
        ),
    ];
    for (name, bytes, want) in cases {
        let path = f.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        f.write_policy(&path, &sha256_file(&path), &FixtureGrants::default());
        let err = start_error(&f);
        assert!(
            err.contains("driver `hostpath`") && err.contains(want),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_compiled_artifact_is_cached_across_restarts() {
    let f = Fixture::new("hostpath", FixtureGrants::default());
    // A cache of its own, so the first start must compile.
    let cache = f.dir.path().join("cache");
    let text = std::fs::read_to_string(&f.policy_path).unwrap();
    let text = text.replace(
        &wasmvol_tests::shared_cache_dir().display().to_string(),
        &cache.display().to_string(),
    );
    std::fs::write(&f.policy_path, text).unwrap();
    let first = f.runtime();
    assert_eq!(
        first.driver("hostpath").unwrap().provenance(),
        wasmvol::runtime::artifact_cache::Provenance::Compiled
    );
    drop(first);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    let rt = f.runtime();
    let d = rt.driver("hostpath").unwrap();
    assert_eq!(
        d.provenance(),
        wasmvol::runtime::artifact_cache::Provenance::Cached
    );
    assert_eq!(d.info().name, "hostpath.wasmvol.io");
    // A driver version holds the store open too.
    drop((d, rt));
    // Whoever writes into the cache cannot make the host load their code:
    // an artifact without this host's MAC over it is compiled over.
    let artifact = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&artifact).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();
    let rt = f.runtime();
    assert_eq!(
        rt.driver("hostpath").unwrap().provenance(),
        wasmvol::runtime::artifact_cache::Provenance::Compiled
    );
}
