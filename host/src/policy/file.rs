//! The policy file's shape, as written: every table and key, serialisable
//! both ways. [`Policy::parse`](super::Policy::parse) reads one and
//! validates it into typed grants; tests and benches build one in code and
//! write it with [`PolicyFile::to_toml`], so no policy is written by hand
//! as text.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::StorageAccess;

/// A whole policy file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// `[host]`.
    pub host: HostEntry,
    /// `[[driver]]`, in order.
    #[serde(default, rename = "driver", skip_serializing_if = "Vec::is_empty")]
    pub drivers: Vec<DriverEntry>,
}

impl PolicyFile {
    /// The file's text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a policy file serialises")
    }
}

/// `[host]`: the host's own files and sockets.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// `state_dir`.
    pub state_dir: PathBuf,
    /// `cache_dir` (default: `<state_dir>/cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// `audit_log` (default: `<state_dir>/audit.jsonl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
    /// `flex_socket` (default: `/run/wasmvol/flex.sock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flex_socket: Option<PathBuf>,
    /// `kubelet_root` (default: `/var/lib/kubelet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_root: Option<PathBuf>,
    /// `http`: `/healthz` and `/metrics` on `"127.0.0.1:9808"` or a unix socket path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// `kubelet_registration`: register CSI drivers with kubelet's plugin watcher.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kubelet_registration: bool,
}

/// One `[[driver]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverEntry {
    /// `name`.
    pub name: String,
    /// `component`.
    pub component: PathBuf,
    /// `sha256`, hex: the component's exact digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `signed_by`: public keys (`ed25519:<hex>`) or key files, one of
    /// which must have signed the component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signed_by: Vec<String>,
    /// `[driver.grants]`.
    #[serde(default)]
    pub grants: GrantsEntry,
    /// `[driver.limits]`.
    #[serde(default)]
    pub limits: LimitsEntry,
    /// `[driver.csi]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi: Option<CsiEntry>,
    /// `[driver.flex]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flex: Option<FlexEntry>,
}

/// `[driver.flex]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlexEntry {
    /// `name`, `vendor/name`.
    pub name: String,
}

/// `[driver.csi]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsiEntry {
    /// `name`, the CSI driver name.
    pub name: String,
    /// `socket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// `socket_mode`, octal text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_mode: Option<String>,
    /// `node_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

/// `[driver.grants]`: everything absent is denied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsEntry {
    /// `storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageEntry>,
    /// `mount`.
    #[serde(default)]
    pub mount: bool,
    /// `fs_types`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fs_types: Vec<String>,
    /// `mount_options`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// `state_quota_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_quota_bytes: Option<u64>,
    /// `secrets`.
    #[serde(default)]
    pub secrets: bool,
    /// `device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceEntry>,
    /// `mount_hardening`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_hardening: Option<HardeningEntry>,
    /// `netfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netfs: Option<NetfsEntry>,
    /// `tmpfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsEntry>,
    /// `lvm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lvm: Option<LvmEntry>,
}

/// `lvm = { groups = [...] }`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LvmEntry {
    /// `groups`: the volume groups the driver may make volumes in.
    pub groups: Vec<LvmGroupEntry>,
}

/// One granted volume group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LvmGroupEntry {
    /// `name`: the volume group.
    pub name: String,
    /// `thin_pools`: thin pools in it the driver may make thin volumes in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thin_pools: Vec<String>,
    /// `max_bytes`: what the driver's volumes in the group may add up to
    /// (virtual sizes for thin volumes).
    pub max_bytes: u64,
}

/// `netfs = { ... }`: the NFS servers, exports, versions and options a driver may use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetfsEntry {
    /// `servers`: host names, addresses and address ranges (`10.0.0.0/8`).
    pub servers: Vec<String>,
    /// `exports`: export paths; paths beneath them may be mounted too.
    pub exports: Vec<String>,
    /// `versions`: `3`, `4.0`, `4.1`, `4.2`.
    pub versions: Vec<String>,
    /// `options`: option names from the host's vocabulary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// `access`: whether shares may be written.
    pub access: StorageAccess,
}

/// `tmpfs = { ... }`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsEntry {
    /// `max_bytes`: the largest tmpfs the driver may mount.
    pub max_bytes: u64,
}

/// `mount_hardening = { ... }`: each flag left out keeps its default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardeningEntry {
    /// `nosuid` (default on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nosuid: Option<bool>,
    /// `nodev` (default on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodev: Option<bool>,
    /// `noexec` (default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noexec: Option<bool>,
}

/// `device = { ... }`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// `max_file_bytes`.
    pub max_file_bytes: u64,
    /// `max_devices` (default [`crate::policy::DEFAULT_MAX_DEVICES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_devices: Option<u32>,
}

/// `storage = { ... }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageEntry {
    /// `root`.
    pub root: PathBuf,
    /// `access`.
    pub access: StorageAccess,
    /// `wasi_preopen`.
    #[serde(default)]
    pub wasi_preopen: bool,
}

/// `[driver.limits]`: each left out keeps its default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    /// `memory_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// `deadline_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// `concurrency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}
