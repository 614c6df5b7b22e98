//! `wasmvol manifests`: `deploy/wasmvol.yaml` is what the generator makes of
//! `deploy/policy.toml` and the components built here, and what it makes
//! matches what the host needs for that policy.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use wasmvol_tests::{component, sha256_file, wasmvol_bin};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn manifests(extra: &[&str]) -> String {
    let components = component("hostpath").parent().unwrap().to_owned();
    let out = Command::new(wasmvol_bin())
        .args(["manifests", "--config"])
        .arg(repo().join("deploy/policy.toml"))
        .arg("--components")
        .arg(&components)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The text with every component digest replaced: a rebuilt component must
/// not make the checked-in manifests stale, anything else must.
fn without_digests(text: &str) -> String {
    text.lines()
        .map(|l| match l.trim_start().strip_prefix("sha256 = \"") {
            Some(_) => "    sha256 = \"…\"".to_owned(),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_checked_in_manifests_are_what_the_policy_generates() {
    let checked_in = std::fs::read_to_string(repo().join("deploy/wasmvol.yaml")).unwrap();
    assert_eq!(
        without_digests(&manifests(&[])),
        without_digests(&checked_in),
        "deploy/wasmvol.yaml is stale: run scripts/gen-deploy.sh"
    );
}

/// The namespace the node objects are generated into.
fn ns(items: &[Value]) -> Value {
    of_kind(items, "Namespace")[0]["metadata"]["name"].clone()
}

fn of_kind<'a>(items: &'a [Value], kind: &str) -> Vec<&'a Value> {
    items.iter().filter(|o| o["kind"] == kind).collect()
}

#[test]
fn the_daemonset_mounts_what_the_policy_needs_and_the_drivers_say_what_they_are() {
    let list: Value = serde_json::from_str(&manifests(&["--json"])).unwrap();
    let items = list["items"].as_array().unwrap();
    let ds = of_kind(items, "DaemonSet")[0];
    let spec = &ds["spec"]["template"]["spec"];
    let host = &spec["containers"][0];
    assert_eq!(host["name"], "wasmvol");
    assert_eq!(host["securityContext"]["privileged"], true);
    let mounts: Vec<(String, String)> = host["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_owned(),
                m["mountPropagation"].as_str().unwrap_or("None").to_owned(),
            )
        })
        .collect();
    let policy = wasmvol::policy::Policy::load(&repo().join("deploy/policy.toml")).unwrap();
    let mut needed = vec![
        ("/var/lib/kubelet/pods".to_string(), "Bidirectional"),
        ("/var/lib/kubelet/plugins".to_string(), "Bidirectional"),
        ("/var/lib/kubelet/plugins_registry".to_string(), "None"),
        ("/dev".to_string(), "HostToContainer"),
        (policy.host.state_dir.display().to_string(), "None"),
        ("/etc/lvm".to_string(), "None"),
    ];
    for d in &policy.drivers {
        if let Some(s) = &d.grants.storage {
            needed.push((s.root.display().to_string(), "Bidirectional"));
        }
    }
    for (path, propagation) in needed {
        assert!(
            mounts.contains(&(path.clone(), propagation.to_string())),
            "{path} ({propagation}) missing from {mounts:?}"
        );
    }
    // Every mount is backed by a volume of the pod.
    let volumes: Vec<&str> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for c in spec["containers"].as_array().unwrap() {
        for m in c["volumeMounts"].as_array().unwrap() {
            assert!(volumes.contains(&m["name"].as_str().unwrap()), "{m}");
        }
    }
    // The node name is the CSI node id.
    assert_eq!(host["env"][0]["name"], "WASMVOL_NODE_ID");
    assert_eq!(
        host["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );

    // What each driver reported of itself.
    let csi_driver = |name: &str| {
        of_kind(items, "CSIDriver")
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no CSIDriver {name}"))
            .clone()
    };
    assert_eq!(
        csi_driver("loopfs.csi.wasmvol.io")["spec"]["attachRequired"],
        false
    );
    assert_eq!(
        csi_driver("lvm.csi.wasmvol.io")["spec"]["storageCapacity"],
        true
    );
    assert_eq!(
        csi_driver("scratch.csi.wasmvol.io")["spec"]["volumeLifecycleModes"],
        serde_json::json!(["Ephemeral"])
    );
    let class = |name: &str| {
        of_kind(items, "StorageClass")
            .into_iter()
            .find(|c| c["metadata"]["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        class("hostpath")["volumeBindingMode"],
        "WaitForFirstConsumer"
    );
    assert_eq!(class("nfs")["volumeBindingMode"], "Immediate");
    // One provisioner per provisioning driver, each in node-deployment mode.
    let provisioners: Vec<&Value> = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().ends_with("-provisioner"))
        .collect();
    assert_eq!(provisioners.len(), 4, "hostpath, loopfs, lvm, nfs");
    for p in provisioners {
        assert!(p["args"]
            .as_array()
            .unwrap()
            .contains(&"--node-deployment=true".into()));
    }
    // Drivers that expand get a resizer, leader-elected (one acts per
    // cluster) with the leases to elect with; their classes allow expansion.
    let resizers: Vec<&str> = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().ends_with("-resizer"))
        .inspect(|c| {
            assert!(c["args"]
                .as_array()
                .unwrap()
                .contains(&"--leader-election=true".into()))
        })
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        resizers,
        ["hostpath-resizer", "loopfs-resizer", "lvm-resizer"],
        "nfs does not expand"
    );
    for name in ["hostpath", "loopfs", "lvm"] {
        assert_eq!(class(name)["allowVolumeExpansion"], true, "{name}");
    }
    assert_eq!(class("nfs")["allowVolumeExpansion"], false);
    // Drivers that snapshot volumes together turn csi-snapshotter's group
    // gate on (hostpath, loopfs), the others (lvm, nfs) do not, and the
    // snapshotter's role may work group snapshot contents.
    let gated: Vec<&str> = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().ends_with("-snapshotter"))
        .filter(|c| {
            c["args"]
                .as_array()
                .unwrap()
                .contains(&"--feature-gates=CSIVolumeGroupSnapshot=true".into())
        })
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(gated, ["hostpath-snapshotter", "loopfs-snapshotter"]);
    let snapshotter = of_kind(items, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "wasmvol-snapshotter")
        .unwrap();
    assert!(snapshotter["rules"].as_array().unwrap().iter().any(|r| {
        r["apiGroups"][0] == "groupsnapshot.storage.k8s.io"
            && r["resources"][0] == "volumegroupsnapshotcontents"
    }));
    let lease_role = of_kind(items, "Role")[0];
    assert_eq!(lease_role["metadata"]["namespace"], ns(items));
    assert_eq!(lease_role["rules"][0]["resources"][0], "leases");
    let binding = of_kind(items, "RoleBinding")[0];
    assert_eq!(binding["roleRef"]["name"], lease_role["metadata"]["name"]);
    // The ConfigMap's policy is pinned to the components that ship.
    let cm = of_kind(items, "ConfigMap")[0];
    let text = cm["data"]["policy.toml"].as_str().unwrap();
    assert!(text.contains(&format!("sha256 = \"{}\"", sha256_file(&component("lvm")))));
}

#[test]
fn every_generated_object_validates_against_the_kubernetes_1_34_schemas() {
    let validator = std::env::var("WASMVOL_KUBERNETES_VALIDATE").expect(
        "WASMVOL_KUBERNETES_VALIDATE names kubernetes-validate (scripts/test.sh installs it)",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wasmvol.yaml");
    std::fs::write(&file, manifests(&[])).unwrap();
    let out = Command::new(&validator)
        .args(["-k", "1.34.0", "--strict", "--no-warn"])
        .arg(&file)
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !report.contains("ERROR"),
        "{report}"
    );
    // Every object but the snapshot class (a CRD, with no schema there) was checked.
    let passed = report.matches(" passed for resource ").count();
    let objects = manifests(&[]).matches("\n---\n").count();
    let crds = manifests(&[])
        .matches("kind: \"VolumeSnapshotClass\"")
        .count();
    assert_eq!(passed, objects - crds, "{report}");
}
