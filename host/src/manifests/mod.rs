//! `wasmvol manifests`: the Kubernetes objects that deploy what a policy
//! says, generated from the policy and from what each driver reports of
//! itself, so they never drift from either.
//!
//! One node DaemonSet runs the host privileged, with kubelet's directories
//! (pods and plugins with Bidirectional propagation, the registration
//! directory), `/dev`, the state directory and each storage root; the
//! policy comes from a ConfigMap and the node name becomes the CSI node id.
//! Beside it, for each CSI driver that provisions, external-provisioner in
//! `--node-deployment` mode (every bundled driver's volumes are served by
//! the host of the node they live on), and csi-snapshotter likewise where
//! the driver snapshots, and csi-resizer (leader-elected: one acts per
//! cluster) where it expands; each with the RBAC it needs and no more. A
//! node-local driver stages without ControllerPublish (it attaches at
//! stage), so its CSIDriver says `attachRequired: false` and no attacher
//! runs; a cluster-wide one that publishes gets csi-attacher. Flex drivers
//! get an installer that writes the shim into kubelet's plugin directory
//! and stays running. Example StorageClasses (WaitForFirstConsumer for
//! node-local drivers) and VolumeSnapshotClasses come last.

pub mod yaml;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::bindings::types::{DriverInfo, Feature};
use crate::policy::{DriverPolicy, HttpListen, Policy};

/// The sidecar images the manifests name (one place to move them forward).
pub const PROVISIONER_IMAGE: &str = "registry.k8s.io/sig-storage/csi-provisioner:v5.3.0";
/// csi-snapshotter, for drivers that snapshot.
pub const SNAPSHOTTER_IMAGE: &str = "registry.k8s.io/sig-storage/csi-snapshotter:v8.3.0";
/// csi-attacher, for cluster-wide drivers with ControllerPublish.
pub const ATTACHER_IMAGE: &str = "registry.k8s.io/sig-storage/csi-attacher:v4.9.0";
/// csi-resizer, for drivers that expand.
pub const RESIZER_IMAGE: &str = "registry.k8s.io/sig-storage/csi-resizer:v1.14.0";

/// What the manifests are for, beyond the policy.
#[derive(Debug, Clone)]
pub struct Options {
    /// The host's image (with the host, the shim and the components).
    pub image: String,
    /// The namespace the node objects live in.
    pub namespace: String,
    /// The policy file's text, as the ConfigMap carries it.
    pub policy_text: String,
}

/// A driver of the policy with what it reported of itself.
pub struct Driver<'a> {
    /// Its policy entry.
    pub policy: &'a DriverPolicy,
    /// Its identity answer.
    pub info: &'a DriverInfo,
}

impl Driver<'_> {
    fn has(&self, f: Feature) -> bool {
        self.info.features.contains(&f)
    }

    fn node_local(&self) -> bool {
        self.has(Feature::NodeLocal)
    }

    fn provisions(&self) -> bool {
        self.policy.csi.is_some() && self.has(Feature::CreateDeleteVolume)
    }

    fn attaches(&self) -> bool {
        self.policy.csi.is_some() && self.has(Feature::PublishUnpublishVolume) && !self.node_local()
    }

    fn snapshots(&self) -> bool {
        self.provisions() && self.has(Feature::Snapshots)
    }

    /// Snapshots volumes together (the GroupController service):
    /// csi-snapshotter's group snapshot gate on, and its group RBAC.
    fn group_snapshots(&self) -> bool {
        self.snapshots() && self.has(Feature::GroupSnapshots)
    }

    /// Volumes grow. A node-local driver's grow at the node (the host does
    /// not advertise ControllerExpandVolume for it), so csi-resizer only
    /// records the new size and kubelet's NodeExpandVolume on the owning
    /// node does the work; either way one resizer per cluster acts, chosen
    /// by leader election among the nodes.
    fn resizes(&self) -> bool {
        self.provisions() && self.has(Feature::ExpandVolume)
    }
}

const SERVICE_ACCOUNT: &str = "wasmvol-node";
const POLICY_DIR: &str = "/etc/wasmvol";

fn labels() -> Value {
    json!({"app.kubernetes.io/name": "wasmvol", "app.kubernetes.io/component": "node"})
}

fn meta(name: &str, namespace: Option<&str>) -> Value {
    let mut m = json!({"name": name, "labels": labels()});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// A volume name for a host path (lower-case letters, digits, dashes).
fn volume_name(prefix: &str, path: &Path) -> String {
    let mut name = format!("{prefix}-{}", path.display())
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    name.trim_end_matches('-').chars().take(63).collect()
}

/// The host paths the node container needs, each with its propagation.
fn host_mounts(policy: &Policy) -> Vec<(PathBuf, &'static str)> {
    let kubelet = &policy.host.kubelet_root;
    let mut mounts = vec![
        (kubelet.join("pods"), "Bidirectional"),
        (kubelet.join("plugins"), "Bidirectional"),
        (kubelet.join("plugins_registry"), "None"),
        (PathBuf::from("/dev"), "HostToContainer"),
        (policy.host.state_dir.clone(), "None"),
    ];
    for d in &policy.drivers {
        if let Some(s) = &d.grants.storage {
            mounts.push((s.root.clone(), "Bidirectional"));
        }
    }
    if policy.drivers.iter().any(|d| d.grants.lvm.is_some()) {
        // The LVM tools in the container act on the node's groups: its
        // configuration, metadata backups, locks and run state.
        for dir in ["/etc/lvm", "/run/lock/lvm", "/run/lvm"] {
            mounts.push((PathBuf::from(dir), "None"));
        }
    }
    if policy.drivers.iter().any(|d| d.flex.is_some()) {
        if let Some(dir) = policy.host.flex_socket.parent() {
            mounts.push((dir.to_owned(), "None"));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    mounts.retain(|(p, _)| seen.insert(p.clone()));
    mounts
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": meta(name, None), "rules": rules})
}

fn cluster_binding(name: &str, namespace: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": meta(name, None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]})
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

/// What external-provisioner reads and writes, with capacity tracking.
fn provisioner_rules(snapshots: bool) -> Value {
    let mut rules = vec![
        rule(
            &[""],
            &["persistentvolumes"],
            &["get", "list", "watch", "create", "delete", "patch"],
        ),
        rule(
            &[""],
            &["persistentvolumeclaims"],
            &["get", "list", "watch", "update"],
        ),
        rule(
            &["storage.k8s.io"],
            &["storageclasses"],
            &["get", "list", "watch"],
        ),
        rule(
            &[""],
            &["events"],
            &["list", "watch", "create", "update", "patch"],
        ),
        rule(
            &["storage.k8s.io"],
            &["csinodes"],
            &["get", "list", "watch"],
        ),
        rule(&[""], &["nodes"], &["get", "list", "watch"]),
        rule(
            &["storage.k8s.io"],
            &["volumeattachments"],
            &["get", "list", "watch"],
        ),
        rule(
            &["storage.k8s.io"],
            &["csistoragecapacities"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        rule(&[""], &["pods"], &["get"]),
        rule(&["apps"], &["daemonsets"], &["get"]),
    ];
    if snapshots {
        rules.push(rule(
            &["snapshot.storage.k8s.io"],
            &["volumesnapshots", "volumesnapshotcontents"],
            &["get", "list"],
        ));
    }
    Value::Array(rules)
}

fn snapshotter_rules(groups: bool) -> Value {
    let mut rules = json!([
        rule(
            &[""],
            &["events"],
            &["list", "watch", "create", "update", "patch"]
        ),
        rule(
            &["snapshot.storage.k8s.io"],
            &["volumesnapshotclasses"],
            &["get", "list", "watch"]
        ),
        rule(
            &["snapshot.storage.k8s.io"],
            &["volumesnapshotcontents"],
            &["get", "list", "watch", "update", "patch"]
        ),
        rule(
            &["snapshot.storage.k8s.io"],
            &["volumesnapshotcontents/status"],
            &["update", "patch"]
        ),
    ]);
    if groups {
        // Group snapshots: the sidecar reads group classes, works group
        // contents and makes one snapshot content per member.
        let more = [
            rule(
                &["groupsnapshot.storage.k8s.io"],
                &["volumegroupsnapshotclasses"],
                &["get", "list", "watch"],
            ),
            rule(
                &["groupsnapshot.storage.k8s.io"],
                &["volumegroupsnapshotcontents"],
                &["get", "list", "watch", "update", "patch"],
            ),
            rule(
                &["groupsnapshot.storage.k8s.io"],
                &["volumegroupsnapshotcontents/status"],
                &["update", "patch"],
            ),
            rule(
                &["snapshot.storage.k8s.io"],
                &["volumesnapshotcontents"],
                &["create"],
            ),
        ];
        rules.as_array_mut().expect("an array").extend(more);
    }
    rules
}

/// What external-resizer reads and writes (pods: to tell a resize that
/// failed because the volume is in use; attribute classes: modifications).
fn resizer_rules() -> Value {
    json!([
        rule(
            &[""],
            &["persistentvolumes"],
            &["get", "list", "watch", "patch"]
        ),
        rule(
            &[""],
            &["persistentvolumeclaims"],
            &["get", "list", "watch"]
        ),
        rule(&[""], &["persistentvolumeclaims/status"], &["patch"]),
        rule(&[""], &["pods"], &["list", "watch"]),
        rule(
            &[""],
            &["events"],
            &["list", "watch", "create", "update", "patch"]
        ),
        rule(
            &["storage.k8s.io"],
            &["volumeattributesclasses"],
            &["get", "list", "watch"]
        ),
    ])
}

/// The leases that sidecars elect their leader with, in the node namespace only.
fn leader_election_objects(namespace: &str) -> [Value; 2] {
    let name = "wasmvol-leader-election";
    [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(name, Some(namespace)),
            "rules": [rule(&["coordination.k8s.io"], &["leases"],
                &["get", "watch", "list", "delete", "update", "create"])]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(name, Some(namespace)),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]}),
    ]
}

fn attacher_rules() -> Value {
    json!([
        rule(
            &[""],
            &["persistentvolumes"],
            &["get", "list", "watch", "patch"]
        ),
        rule(
            &["storage.k8s.io"],
            &["csinodes"],
            &["get", "list", "watch"]
        ),
        rule(
            &["storage.k8s.io"],
            &["volumeattachments"],
            &["get", "list", "watch", "patch"]
        ),
        rule(
            &["storage.k8s.io"],
            &["volumeattachments/status"],
            &["patch"]
        ),
    ])
}

fn env_field(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

/// A sidecar talking to one driver's CSI socket, mounted at `/csi`.
fn sidecar(name: &str, image: &str, args: Vec<String>, socket_volume: &str) -> Value {
    json!({
        "name": name,
        "image": image,
        "args": args,
        "env": [
            {"name": "ADDRESS", "value": "/csi/csi.sock"},
            env_field("NODE_NAME", "spec.nodeName"),
            env_field("NAMESPACE", "metadata.namespace"),
            env_field("POD_NAME", "metadata.name"),
        ],
        "volumeMounts": [{"name": socket_volume, "mountPath": "/csi"}],
    })
}

/// Every object, in the order `kubectl apply` wants them.
pub fn objects(policy: &Policy, drivers: &[Driver<'_>], o: &Options) -> Vec<Value> {
    let ns = o.namespace.as_str();
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(ns, None)}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(SERVICE_ACCOUNT, Some(ns))}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("wasmvol-policy", Some(ns)),
            "data": {"policy.toml": o.policy_text}}),
    ];
    let provisions = drivers.iter().any(|d| d.provisions());
    let snapshots = drivers.iter().any(|d| d.snapshots());
    let group_snapshots = drivers.iter().any(|d| d.group_snapshots());
    let attaches = drivers.iter().any(|d| d.attaches());
    let resizes = drivers.iter().any(|d| d.resizes());
    for (role, needed, rules) in [
        (
            "wasmvol-provisioner",
            provisions,
            provisioner_rules(snapshots),
        ),
        (
            "wasmvol-snapshotter",
            snapshots,
            snapshotter_rules(group_snapshots),
        ),
        ("wasmvol-attacher", attaches, attacher_rules()),
        ("wasmvol-resizer", resizes, resizer_rules()),
    ] {
        if needed {
            out.push(cluster_role(role, rules));
            out.push(cluster_binding(role, ns));
        }
    }
    if attaches || resizes {
        out.extend(leader_election_objects(ns));
    }

    // CSIDriver objects: what kubelet and the scheduler need to know.
    for d in drivers {
        let Some(csi) = &d.policy.csi else { continue };
        let modes = if d.has(Feature::CreateDeleteVolume) {
            json!(["Persistent"])
        } else {
            json!(["Ephemeral"])
        };
        out.push(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
            "metadata": meta(csi.name.as_str(), None),
            "spec": {
                "attachRequired": d.attaches(),
                "podInfoOnMount": true,
                "fsGroupPolicy": if d.has(Feature::FsGroup) { "File" } else { "ReadWriteOnceWithFSType" },
                "volumeLifecycleModes": modes,
                "storageCapacity": d.provisions() && d.node_local() && d.has(Feature::GetCapacity),
                "requiresRepublish": false,
                "seLinuxMount": d.has(Feature::SelinuxRelabel),
            },
        }));
    }

    // The node DaemonSet.
    let mounts = host_mounts(policy);
    let mut volumes = vec![json!({"name": "policy", "configMap": {"name": "wasmvol-policy"}})];
    let mut host_volume_mounts =
        vec![json!({"name": "policy", "mountPath": POLICY_DIR, "readOnly": true})];
    for (path, propagation) in &mounts {
        let name = volume_name("host", path);
        volumes
            .push(json!({"name": name, "hostPath": {"path": path, "type": "DirectoryOrCreate"}}));
        let mut m = json!({"name": name, "mountPath": path});
        if *propagation != "None" {
            m["mountPropagation"] = json!(propagation);
        }
        host_volume_mounts.push(m);
    }
    let longest_deadline_s = policy
        .drivers
        .iter()
        .map(|d| d.limits.deadline_ms.div_ceil(1000))
        .max()
        .unwrap_or(0);
    let mut host = json!({
        "name": "wasmvol",
        "image": o.image,
        "args": ["serve", "--config", format!("{POLICY_DIR}/policy.toml")],
        "securityContext": {"privileged": true},
        "env": [env_field("WASMVOL_NODE_ID", "spec.nodeName")],
        "volumeMounts": host_volume_mounts,
    });
    if let Some(HttpListen::Tcp(addr)) = &policy.host.http {
        host["ports"] = json!([{"name": "http", "containerPort": addr.port()}]);
        // kubelet probes the pod's address: only a host listening on every
        // address (`0.0.0.0:9808`) can answer it.
        if addr.ip().is_unspecified() {
            host["livenessProbe"] = json!({"httpGet": {"path": "/healthz", "port": "http"},
                "periodSeconds": 10, "failureThreshold": 3});
        }
    }
    let mut containers = vec![host];
    for d in drivers {
        let Some(csi) = &d.policy.csi else { continue };
        let socket_dir = csi.socket.parent().unwrap_or(Path::new("/"));
        let socket_volume = volume_name("csi", socket_dir);
        if !volumes.iter().any(|v| v["name"] == socket_volume) {
            volumes.push(json!({"name": socket_volume, "hostPath": {"path": socket_dir, "type": "DirectoryOrCreate"}}));
        }
        let short = d.policy.name.as_str();
        if d.provisions() {
            let mut args: Vec<String> = [
                "--csi-address=$(ADDRESS)",
                "--node-deployment=true",
                "--extra-create-metadata",
                "--leader-election=false",
            ]
            .map(String::from)
            .into();
            if d.node_local() {
                args.extend([
                    "--feature-gates=Topology=true".into(),
                    "--strict-topology".into(),
                ]);
                if d.has(Feature::GetCapacity) {
                    args.extend([
                        "--enable-capacity".into(),
                        "--capacity-ownerref-level=1".into(),
                    ]);
                }
            }
            containers.push(sidecar(
                &format!("{short}-provisioner"),
                PROVISIONER_IMAGE,
                args,
                &socket_volume,
            ));
        }
        if d.snapshots() {
            let mut args: Vec<String> = [
                "--csi-address=$(ADDRESS)",
                "--node-deployment=true",
                "--leader-election=false",
            ]
            .map(String::from)
            .into();
            if d.group_snapshots() {
                args.push("--feature-gates=CSIVolumeGroupSnapshot=true".into());
            }
            containers.push(sidecar(
                &format!("{short}-snapshotter"),
                SNAPSHOTTER_IMAGE,
                args,
                &socket_volume,
            ));
        }
        if d.attaches() {
            let args = ["--csi-address=$(ADDRESS)", "--leader-election=true"]
                .map(String::from)
                .into();
            containers.push(sidecar(
                &format!("{short}-attacher"),
                ATTACHER_IMAGE,
                args,
                &socket_volume,
            ));
        }
        if d.resizes() {
            let args = ["--csi-address=$(ADDRESS)", "--leader-election=true"]
                .map(String::from)
                .into();
            containers.push(sidecar(
                &format!("{short}-resizer"),
                RESIZER_IMAGE,
                args,
                &socket_volume,
            ));
        }
    }
    for d in drivers {
        let Some(flex) = &d.policy.flex else { continue };
        let plugin_dir = crate::flex::install::DEFAULT_PLUGIN_DIR;
        let name = volume_name("flex", Path::new(plugin_dir));
        if !volumes.iter().any(|v| v["name"] == name) {
            volumes.push(json!({"name": name, "hostPath": {"path": plugin_dir, "type": "DirectoryOrCreate"}}));
        }
        containers.push(json!({
            "name": format!("{}-flex-installer", d.policy.name.as_str()),
            "image": o.image,
            "args": ["flex", "install", "--driver", flex.full(), "--plugin-dir", plugin_dir,
                "--socket", policy.host.flex_socket, "--stay"],
            "volumeMounts": [{"name": name, "mountPath": plugin_dir}],
        }));
    }
    out.push(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": meta("wasmvol-node", Some(ns)),
        "spec": {
            "selector": {"matchLabels": labels()},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "priorityClassName": "system-node-critical",
                    // In-flight calls may run to the longest deadline at SIGTERM.
                    "terminationGracePeriodSeconds": longest_deadline_s + 5,
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    }));

    // Examples to start from.
    for d in drivers {
        let Some(csi) = &d.policy.csi else { continue };
        if !d.provisions() {
            continue;
        }
        out.push(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": meta(d.policy.name.as_str(), None),
            "provisioner": csi.name.as_str(),
            "reclaimPolicy": "Delete",
            "volumeBindingMode": if d.node_local() { "WaitForFirstConsumer" } else { "Immediate" },
            "allowVolumeExpansion": d.resizes(),
        }));
        if d.snapshots() {
            out.push(json!({
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                "metadata": meta(d.policy.name.as_str(), None),
                "driver": csi.name.as_str(),
                "deletionPolicy": "Delete",
            }));
        }
    }
    out
}

/// The objects as one YAML stream.
pub fn to_yaml(objects: &[Value]) -> String {
    let mut out = String::from("# Generated by `wasmvol manifests`: regenerate, do not edit.\n");
    for o in objects {
        out.push_str("---\n");
        out.push_str(&yaml::document(o));
    }
    out
}
