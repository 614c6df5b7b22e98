//! The operator's and security team's view: `wasmvol inspect` and `wasmvol audit`.

use std::process::Command;

use serde_json::Value;
use wasmvol_tests::{component, sha256_file, wasmvol_bin, Fixture, FixtureGrants};

fn json_of(args: &[&str], extra: &std::path::Path) -> Value {
    let out = Command::new(wasmvol_bin())
        .args(args)
        .arg(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
}
