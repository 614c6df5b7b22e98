//! The operator's and security team's view: `wasmvol inspect` and `wasmvol audit`.

use std::process::Command;

use serde_json::Value;
use wasmvol_tests::{component, sha256_file, wasmvol_bin, Fixture, FixtureGrants};

/// Runs `cmd`, which must succeed, and returns its stdout.
fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(args: &[&str], extra: &std::path::Path) -> Value {
    serde_json::from_str(&stdout_of(
        Command::new(wasmvol_bin()).args(args).arg(extra),
    ))
    .unwrap()
}

#[test]
fn inspect_lists_imports_with_the_functions_and_grants_they_need() {
    let hostpath = component("hostpath");
    let v = json_of(&["inspect", "--json"], &hostpath);
    assert_eq!(v["sha256"], sha256_file(&hostpath));
    let imports = v["imports"].as_array().unwrap();
    let find = |name: &str| {
        imports
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} not imported: {imports:?}"))
    };
    let mount = find("wasmvol:driver/mount@0.1.0");
    assert_eq!(mount["grant"], "grants.mount");
    assert!(mount["functions"]
        .as_array()
        .unwrap()
        .contains(&Value::from("[method]target.bind-from-root")));
    assert_eq!(find("wasmvol:driver/state@0.1.0")["kind"], "state");
    assert!(imports.iter().all(|i| i["kind"] != "unknown"));
    assert_eq!(
        v["exports"],
        serde_json::json!([
            "wasmvol:driver/identity@0.1.0",
            "wasmvol:driver/controller@0.1.0",
            "wasmvol:driver/node@0.1.0"
        ])
    );
}

#[test]
fn audit_shows_granted_unused_and_missing() {
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            device: true,
            ..FixtureGrants::default()
        },
    );
    let v = json_of(&["audit", "--json", "--config"], &f.policy_path);
    let d = &v[0];
    assert_eq!(d["driver"], "hostpath");
    assert_eq!(d["sha256"], sha256_file(&component("hostpath")));
    let list = |k: &str| -> Vec<String> {
        d[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(list("granted"), ["storage", "mount", "state", "device"]);
    assert_eq!(
        list("granted_but_unused"),
        ["device"],
        "hostpath never touches devices"
    );
    assert!(list("imported_but_not_granted").is_empty());
    // hostpath imports no device: the fs types and mount options granted
    // with it can never be used, which --strict refuses.
    assert_eq!(list("granted_but_cannot_be_honoured").len(), 2);
    let strict = |f: &Fixture| {
        Command::new(wasmvol_bin())
            .args(["audit", "--strict", "--config"])
            .arg(&f.policy_path)
            .output()
            .unwrap()
    };
    let out = strict(&f);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fs_types: the driver does not import device"),
        "{text}"
    );
    f.regrant(&FixtureGrants::default());
    assert!(
        strict(&f).status.success(),
        "the default grants are all usable"
    );

    // Take mount away: the audit names the import the policy no longer covers.
    let no_mount = FixtureGrants {
        mount: false,
        ..FixtureGrants::default()
    };
    f.regrant(&no_mount);
    let v = json_of(&["audit", "--json", "--config"], &f.policy_path);
    assert_eq!(
        v[0]["imported_but_not_granted"],
        serde_json::json!(["wasmvol:driver/mount@0.1.0"])
    );
    let out = strict(&f);
    assert_eq!(out.status.code(), Some(1), "serve would refuse this driver");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--strict"));
}

/// `wasmvol conformance` of a component, as a vendor runs it before
/// shipping, with its sandbox made in `tmp`.
fn conformance(tmp: &std::path::Path, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    wasmvol_tests::require_privileged();
    let out = Command::new(wasmvol_bin())
        .env("TMPDIR", tmp)
        .arg("conformance")
        .args(args)
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn conformance_passes_a_conforming_driver_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let hostpath = component("hostpath");
    let (status, out, err) = conformance(
        tmp.path(),
        &[
            hostpath.to_str().unwrap(),
            "--mutable-parameter",
            "readOnly=false",
            "-o",
            "json",
        ],
    );
    assert!(status.success(), "{err}\n{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert!(rows.len() > 80, "{} rows", rows.len());
    for r in rows {
        assert!(r["result"] == "passed" || r["result"] == "skipped", "{r}");
    }
    // What the sweep made it deleted, and its sandbox is gone.
    let leftovers: Vec<_> = rows.iter().filter(|r| r["rpc"] == "(sweep)").collect();
    assert_eq!(leftovers.len(), 2);
    assert!(leftovers.iter().all(|r| r["result"] == "passed"));
    let sandboxes: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(sandboxes.is_empty(), "{sandboxes:?}");
}

#[test]
fn conformance_fails_a_driver_that_cannot_make_volumes_with_the_specs_words() {
    // Its storage root granted read-only: hostpath cannot make a volume.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let grants = dir.path().join("grants.toml");
    std::fs::write(
        &grants,
        format!(
            "mount = true\nstate_quota_bytes = 1048576\n[storage]\nroot = {root:?}\naccess = \"read-only\"\n"
        ),
    )
    .unwrap();
    let hostpath = component("hostpath");
    let (status, out, err) = conformance(
        dir.path(),
        &[
            hostpath.to_str().unwrap(),
            "--grants",
            grants.to_str().unwrap(),
        ],
    );
    assert_eq!(status.code(), Some(1), "{err}\n{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("CreateVolume") && l.contains("creates a volume"))
        .unwrap_or_else(|| panic!("no CreateVolume row:\n{out}"));
    assert!(line.contains("FAIL want OK, got "), "{line}");
    assert!(out.contains("rows that need a volume"), "{out}");
    assert!(out.lines().last().unwrap().contains("failed"), "{out}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "nothing made");
}

#[test]
fn conformance_reports_each_sentence_a_sloppy_driver_breaks_by_rpc() {
    let tmp = tempfile::tempdir().unwrap();
    let sloppy = component("sloppy");
    let (status, out, err) = conformance(tmp.path(), &[sloppy.to_str().unwrap(), "-o", "json"]);
    assert_eq!(status.code(), Some(1), "{err}\n{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let failed: Vec<(String, String, String)> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["result"] == "failed")
        .map(|r| {
            (
                r["rpc"].as_str().unwrap().to_owned(),
                r["spec"].as_str().unwrap().to_owned(),
                r["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let rows: Vec<(&str, &str)> = failed
        .iter()
        .map(|(rpc, spec, _)| (rpc.as_str(), spec.as_str()))
        .collect();
    // Exactly its two mistakes, each named by RPC and the spec's words.
    assert_eq!(
        rows,
        [
            ("CreateVolume", "MUST be idempotent"),
            ("ValidateVolumeCapabilities", "volume does not exist"),
        ],
        "{out}"
    );
    assert!(
        failed[0].2.starts_with("want OK, got ALREADY_EXISTS"),
        "{}",
        failed[0].2
    );
    assert!(
        failed[1].2.starts_with("want NOT_FOUND, got OK"),
        "{}",
        failed[1].2
    );
}

#[test]
fn conformance_refuses_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm").unwrap();
    let (status, out, err) = conformance(dir.path(), &[bogus.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1));
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("wasmvol serve refused the component"), "{err}");
}

#[test]
fn a_new_driver_builds_tests_natively_and_passes_conformance_from_an_empty_directory() {
    wasmvol_tests::require_privileged();
    let tmp = tempfile::tempdir().unwrap();
    stdout_of(
        Command::new(wasmvol_bin())
            .args(["new", "demo"])
            .current_dir(tmp.path()),
    );
    let demo = tmp.path().join("demo");
    for f in ["Cargo.toml", "src/lib.rs", "policy-entry.toml"] {
        assert!(demo.join(f).exists(), "{f}");
    }
    // Build targets shared between runs of this test (cold in CI).
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/template");
    let built = stdout_of(
        Command::new(wasmvol_bin())
            .arg("build")
            .arg("--target-dir")
            .arg(shared.join("wasm"))
            .current_dir(&demo),
    );
    let line = built
        .lines()
        .find(|l| l.starts_with("build: "))
        .unwrap_or_else(|| panic!("{built}"));
    let path = std::path::PathBuf::from(line["build: ".len()..].split(" (").next().unwrap());
    assert!(
        line.ends_with(&format!("sha256 {})", sha256_file(&path))),
        "{line}"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tested = stdout_of(
        Command::new(cargo)
            .args(["test", "--quiet"])
            .env("CARGO_TARGET_DIR", shared.join("native"))
            .current_dir(&demo),
    );
    assert!(tested.contains("2 passed"), "{tested}");
    // The template is a conforming driver as written.
    let (status, out, err) =
        conformance(tmp.path(), &[path.to_str().unwrap(), "--unsized-volumes"]);
    assert!(status.success(), "{err}\n{out}");
    // And `new` never writes over a crate.
    let out = Command::new(wasmvol_bin())
        .args(["new", "demo"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
}

#[test]
fn audit_with_the_log_shows_what_was_used_and_each_grant_wider_than_that() {
    // hostpath granted what it never uses: the device interface, its fs
    // types and mount options; its storage root is written (it makes
    // volume directories), so read-write is not wider than used.
    let f = Fixture::new(
        "hostpath",
        FixtureGrants {
            device: true,
            ..FixtureGrants::default()
        },
    );
    let create = serde_json::json!({
        "name": "pvc-usage", "capacity_range": null,
        "volume_capabilities": [{"access_type": {"Mount": {"fs_type": "", "mount_flags": [], "volume_mount_group": ""}}, "access_mode": "SingleNodeWriter"}],
        "parameters": [], "secrets": [], "content_source": null,
        "accessibility_requirements": null, "mutable_parameters": []
    });
    stdout_of(
        Command::new(wasmvol_bin())
            .args(["call", "--config"])
            .arg(&f.policy_path)
            .args(["hostpath", "create-volume", "--request"])
            .arg(create.to_string()),
    );
    let log = f.dir.path().join("state/audit.jsonl");
    let audit = |extra: &[&str]| -> Value {
        let out = stdout_of(
            Command::new(wasmvol_bin())
                .args(["audit", "--json", "--config"])
                .arg(&f.policy_path)
                .arg("--log")
                .arg(&log)
                .args(extra),
        );
        serde_json::from_str(&out).unwrap()
    };
    let d = &audit(&[])[0];
    let ops = &d["used"]["operations"];
    assert_eq!(ops["call:create-volume"]["allowed"], 1, "{ops}");
    assert!(
        ops["volumes.create-dir"]["allowed"].as_u64().unwrap() >= 1,
        "{ops}"
    );
    assert_eq!(ops["volumes.create-dir"]["denied"], 0);
    let wider: Vec<&str> = d["wider_than_used"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    for want in [
        "device: granted, never used",
        "fs_types: `ext4` granted, never used",
        "fs_types: `xfs` granted, never used",
        "mount_options: `noatime` granted, never used",
    ] {
        assert!(wider.contains(&want), "{want} missing from {wider:?}");
    }
    assert!(
        !wider.iter().any(|w| w.starts_with("storage")),
        "the root was written: {wider:?}"
    );
    // Only the last second: nothing was used in it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let d = &audit(&["--since", "1s"])[0];
    assert_eq!(d["used"]["operations"], serde_json::json!({}));
    assert!(d["wider_than_used"]
        .as_array()
        .unwrap()
        .contains(&Value::from("storage: granted, never used")));
}
