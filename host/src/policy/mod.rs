//! The operator's policy file: which drivers run, pinned by digest, and what
//! each may do.
//!
//! Parsing happens once, here, at the edge: the rest of the host carries the
//! validated [`Policy`] and never looks at TOML again. Everything not granted
//! is denied.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod bundled;
pub mod file;

use file::PolicyFile;

use crate::digest::Sha256Digest;
pub use crate::nfs::NetfsGrant;
use crate::runtime::engine::MAX_POOLED_INSTANCES;
use crate::sys::fstools::Fs;

/// A policy file that could not be used, naming the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The policy file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or a field that does not belong.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The policy file.
        path: PathBuf,
        /// 1-based line of the fault.
        line: usize,
        /// 1-based column of the fault.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Well-formed, but a `[host]` value is not acceptable.
    #[error("{path}: [host] {field}: {message}")]
    InvalidHost {
        /// The policy file.
        path: PathBuf,
        /// The field at fault, e.g. `http`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Well-formed, but a value is not acceptable.
    #[error("{path}: driver `{driver}`: {field}: {message}")]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// The driver entry at fault.
        driver: String,
        /// The field at fault, e.g. `grants.fs_types`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole policy: host settings and the drivers it may run.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// File the policy came from (relative paths inside resolve against its folder).
    pub source: PathBuf,
    /// The host's own files and sockets.
    pub host: HostSettings,
    /// The drivers it may run, in policy order.
    pub drivers: Vec<DriverPolicy>,
}

/// Where the host keeps its own files.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSettings {
    /// Durable driver state (the embedded store) lives here.
    pub state_dir: PathBuf,
    /// Compiled components, keyed by digest and engine configuration.
    pub cache_dir: PathBuf,
    /// JSON-lines audit log of every capability use.
    pub audit_log: PathBuf,
    /// Unix socket the FlexVolume shims call (served when a driver is marked for Flex).
    pub flex_socket: PathBuf,
    /// kubelet's root directory: CSI sockets default beneath its `plugins/`,
    /// registration sockets live in its `plugins_registry/`.
    pub kubelet_root: PathBuf,
    /// Whether each CSI driver registers itself with kubelet (no
    /// node-driver-registrar sidecar needed).
    pub kubelet_registration: bool,
    /// Where `/healthz` and `/metrics` are served, if anywhere.
    pub http: Option<HttpListen>,
}

impl HostSettings {
    /// The admin socket (`wasmvol status`, `wasmvol call` while the host
    /// runs): in the state directory, beside the store only the host opens.
    pub fn admin_socket(&self) -> PathBuf {
        self.state_dir.join("admin.sock")
    }
}

/// Where the host's HTTP endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpListen {
    /// A TCP address, e.g. `127.0.0.1:9808`.
    Tcp(std::net::SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl HttpListen {
    /// Parses `[host] http`: an absolute path is a unix socket, anything
    /// else an address with a port.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        s.parse().map(Self::Tcp).map_err(|_| {
            format!("`{s}` is neither an address with a port (127.0.0.1:9808) nor an absolute socket path")
        })
    }
}

/// One driver: its pinned component, its grants and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverPolicy {
    /// Name the operator calls the driver by (policy key, audit tag).
    pub name: DriverName,
    /// The component file.
    pub component: PathBuf,
    /// What the component must be (its digest, its signer); anything else is refused.
    pub pin: ComponentPin,
    /// What the driver may do.
    pub grants: Grants,
    /// Bounds on each call.
    pub limits: Limits,
    /// Serve the driver over CSI (absent: no CSI socket).
    pub csi: Option<CsiSettings>,
    /// Serve the driver to FlexVolume shims (absent: not offered).
    pub flex: Option<FlexName>,
}

/// What a driver's component must be to load: exactly the file an operator
/// approved (`sha256`), any release signed by a trusted vendor key
/// (`signed_by`, see [`crate::signature`]), or both at once. At least one.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentPin {
    /// The digest the file must have.
    pub sha256: Option<Sha256Digest>,
    /// Keys one of which must have signed it.
    pub signed_by: Vec<crate::signature::PublicKey>,
}

impl ComponentPin {
    /// Pinned to exactly these bytes.
    pub fn digest(sha256: Sha256Digest) -> Self {
        Self {
            sha256: Some(sha256),
            signed_by: Vec::new(),
        }
    }
}

/// A FlexVolume driver name `vendor/name`, as pods and PVs spell it; the
/// shim is installed at `<plugin dir>/vendor~name/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlexName {
    /// The part before the slash.
    pub vendor: String,
    /// The part after the slash (also the shim's file name).
    pub name: String,
}

impl FlexName {
    /// Validates `vendor/name` (letters, digits, `.`, `_`, `-` on each side).
    pub fn parse(s: &str) -> Result<Self, String> {
        let part = |p: &str| {
            !p.is_empty()
                && p.len() <= 63
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && p != "."
                && p != ".."
        };
        match s.split_once('/') {
            Some((vendor, name)) if part(vendor) && part(name) => Ok(Self {
                vendor: vendor.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(format!(
                "`{s}` is not a FlexVolume driver name `vendor/name`"
            )),
        }
    }

    /// `vendor/name`.
    pub fn full(&self) -> String {
        format!("{}/{}", self.vendor, self.name)
    }

    /// The install directory name, `vendor~name`.
    pub fn dir_name(&self) -> String {
        format!("{}~{}", self.vendor, self.name)
    }
}

/// How a driver is offered to kubelet over CSI.
#[derive(Debug, Clone, PartialEq)]
pub struct CsiSettings {
    /// The CSI driver name (GetPluginInfo), validated against CSI's naming rules.
    pub name: CsiName,
    /// Unix socket path; default `/var/lib/kubelet/plugins/<name>/csi.sock`.
    pub socket: PathBuf,
    /// Permission bits of the socket file (default 0o660).
    pub socket_mode: u32,
    /// Node id reported by NodeGetInfo when the driver leaves it empty; default the host name.
    pub node_id: Option<String>,
    /// Where the driver registers with kubelet
    /// (`<kubelet root>/plugins_registry/<name>-reg.sock`), when the host does.
    pub registration_socket: Option<PathBuf>,
}

/// A CSI driver name: at most 63 characters, alphanumeric at both ends,
/// alphanumerics, `-`, `.` and `_` between (CSI spec, GetPluginInfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsiName(String);

impl CsiName {
    /// Validates a CSI driver name.
    pub fn parse(name: &str) -> Result<Self, String> {
        let alnum = |c: char| c.is_ascii_alphanumeric();
        let ok = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(alnum)
            && name.ends_with(alnum)
            && name
                .chars()
                .all(|c| alnum(c) || c == '-' || c == '.' || c == '_');
        if !ok {
            return Err(format!(
                "`{name}` is not a CSI driver name (at most 63 characters, alphanumeric at both ends, `-`, `.`, `_` between)"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated driver name: `[a-z0-9][a-z0-9.-]*`, at most 63 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DriverName(String);

impl DriverName {
    /// Validates a driver name, so it can be used in paths and log tags.
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok_first = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_rest = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !ok_first || !ok_rest || name.len() > 63 {
            return Err(format!(
                "`{name}` is not a driver name (lower-case letters, digits, `-` and `.`, at most 63, starting with a letter or digit)"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DriverName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether the storage root may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageAccess {
    /// Listing, reading and statistics only.
    ReadOnly,
    /// Creating, writing, renaming and removing too.
    ReadWrite,
}

/// The storage root granted to a driver.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageGrant {
    /// The directory; the driver reaches nothing outside it.
    pub root: PathBuf,
    /// Whether it may write there.
    pub access: StorageAccess,
    /// Also expose the root to WASI as the preopen `/storage`.
    pub wasi_preopen: bool,
}

/// What a driver may do. Absent means denied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// The storage root, if any.
    pub storage: Option<StorageGrant>,
    /// May mount onto the request's target handles.
    pub mount: bool,
    /// Filesystem types it may mount or make (device interface): only
    /// those the host itself can make and mount.
    pub fs_types: BTreeSet<Fs>,
    /// Mount options it may pass.
    pub mount_options: BTreeSet<String>,
    /// Bytes of durable state (keys plus values); `None`: no state.
    pub state_quota_bytes: Option<u64>,
    /// May receive the secrets callers send.
    pub secrets: bool,
    /// May create backing files and attach loop devices (`device` interface).
    pub device: Option<DeviceGrant>,
    /// Flags every mount the host makes for the driver carries.
    pub mount_hardening: MountHardening,
    /// May mount these NFS exports (`netfs` interface).
    pub netfs: Option<NetfsGrant>,
    /// May mount size-limited tmpfs filesystems (`tmpfs` interface).
    pub tmpfs: Option<TmpfsGrant>,
    /// May make logical volumes in these groups (`lvm` interface).
    pub lvm: Option<LvmGrant>,
}

/// The lvm capability: logical volumes in granted volume groups.
#[derive(Debug, Clone, PartialEq)]
pub struct LvmGrant {
    /// The granted groups.
    pub groups: Vec<LvmGroupGrant>,
}

impl LvmGrant {
    /// The grant of group `vg`, if granted.
    pub fn group(&self, vg: &str) -> Option<&LvmGroupGrant> {
        self.groups.iter().find(|g| g.vg.as_str() == vg)
    }
}

/// One granted volume group.
#[derive(Debug, Clone, PartialEq)]
pub struct LvmGroupGrant {
    /// The group.
    pub vg: crate::sys::lvm::VgName,
    /// Thin pools in it the driver may use.
    pub thin_pools: Vec<crate::sys::lvm::LvName>,
    /// What the driver's volumes in the group may add up to.
    pub max_bytes: u64,
}

/// The tmpfs capability: new in-memory filesystems of a bounded size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TmpfsGrant {
    /// Largest tmpfs the driver may mount.
    pub max_bytes: u64,
}

/// Flags the host sets on every mount it makes for a driver, whatever the
/// driver asks: the data on a volume was written by the sandboxed driver or
/// a pod, so by default no setuid bit and no device node on it is honoured
/// on the node. An operator opts a driver out per flag
/// (`mount_hardening = { nosuid = false }`); `noexec` is opt-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MountHardening {
    /// `nosuid`: setuid and setgid bits are ignored.
    pub nosuid: bool,
    /// `nodev`: device nodes cannot be opened.
    pub nodev: bool,
    /// `noexec`: nothing on the mount may be executed.
    pub noexec: bool,
}

impl Default for MountHardening {
    fn default() -> Self {
        Self {
            nosuid: true,
            nodev: true,
            noexec: false,
        }
    }
}

impl MountHardening {
    /// The flags set, by their mount option names (for audit records).
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.nosuid, "nosuid"),
            (self.nodev, "nodev"),
            (self.noexec, "noexec"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// The device capability: loop devices over backing files in the storage root.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceGrant {
    /// Largest backing file the driver may create or grow to.
    pub max_file_bytes: u64,
    /// Loop devices the driver may have attached at once: loop devices are
    /// a node-wide resource (the kernel has a few hundred by default).
    pub max_devices: u32,
}

/// `max_devices` when the policy names none.
pub const DEFAULT_MAX_DEVICES: u32 = 16;

/// Resource limits for each call into a driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Linear memory one instance may grow to.
    pub memory_bytes: u64,
    /// Wall-clock budget of one call; past it the call traps.
    pub deadline_ms: u64,
    /// Calls in flight at once; more wait (up to the deadline), then get `Busy`.
    pub concurrency: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            deadline_ms: 10_000,
            concurrency: 16,
        }
    }
}

/// Mount options that would undo [`MountHardening`]: a policy sets those
/// through `mount_hardening`, never through `mount_options`.
const HARDENING_OPTIONS: &[&str] = &["suid", "dev", "exec", "nosuid", "nodev", "noexec"];

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses policy text; `path` names the file in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyError> {
        let raw: PolicyFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            PolicyError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let anchor = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let state_dir = anchor(raw.host.state_dir);
        let host = HostSettings {
            cache_dir: raw
                .host
                .cache_dir
                .map(anchor)
                .unwrap_or_else(|| state_dir.join("cache")),
            audit_log: raw
                .host
                .audit_log
                .map(anchor)
                .unwrap_or_else(|| state_dir.join("audit.jsonl")),
            flex_socket: raw
                .host
                .flex_socket
                .map(anchor)
                .unwrap_or_else(|| PathBuf::from("/run/wasmvol/flex.sock")),
            kubelet_root: raw
                .host
                .kubelet_root
                .map(anchor)
                .unwrap_or_else(|| PathBuf::from("/var/lib/kubelet")),
            kubelet_registration: raw.host.kubelet_registration,
            http: match &raw.host.http {
                None => None,
                Some(h) => {
                    Some(
                        HttpListen::parse(h).map_err(|message| PolicyError::InvalidHost {
                            path: path.to_owned(),
                            field: "http",
                            message,
                        })?,
                    )
                }
            },
            state_dir,
        };
        let mut drivers: Vec<DriverPolicy> = Vec::new();
        for d in raw.drivers {
            let invalid = |field: &'static str, message: String| PolicyError::Invalid {
                path: path.to_owned(),
                driver: d.name.clone(),
                field,
                message,
            };
            let name = DriverName::parse(&d.name).map_err(|m| invalid("name", m))?;
            if drivers.iter().any(|x| x.name == name) {
                return Err(invalid("name", "listed twice".into()));
            }
            let sha256 = match d.sha256.as_deref() {
                Some(hex) => Some(Sha256Digest::parse_hex(hex).map_err(|m| invalid("sha256", m))?),
                None => None,
            };
            let mut signed_by = Vec::new();
            for entry in &d.signed_by {
                let key = crate::signature::PublicKey::from_entry(entry, base)
                    .map_err(|e| invalid("signed_by", e.to_string()))?;
                signed_by.push(key);
            }
            if sha256.is_none() && signed_by.is_empty() {
                return Err(invalid(
                    "sha256",
                    "pin the component: `sha256 = \"<hex>\"`, `signed_by = [\"<key or key file>\"]`, or both".into(),
                ));
            }
            let pin = ComponentPin { sha256, signed_by };
            let storage = match d.grants.storage {
                Some(s) => {
                    let root = anchor(s.root);
                    Some(StorageGrant {
                        root,
                        access: s.access,
                        wasi_preopen: s.wasi_preopen,
                    })
                }
                None => None,
            };
            let mut fs_types = BTreeSet::new();
            for name in &d.grants.fs_types {
                let fs = Fs::from_name(name).ok_or_else(|| {
                    invalid(
                        "grants.fs_types",
                        format!(
                            "`{name}` is not a filesystem the host can make and mount (one of: {})",
                            Fs::ALL.map(Fs::name).join(", ")
                        ),
                    )
                })?;
                fs_types.insert(fs);
            }
            for opt in &d.grants.mount_options {
                if opt.is_empty() || opt.contains(',') || opt.chars().any(char::is_whitespace) {
                    return Err(invalid(
                        "grants.mount_options",
                        format!("`{opt}` is not a single mount option"),
                    ));
                }
                if HARDENING_OPTIONS.contains(&opt.as_str()) {
                    return Err(invalid(
                        "grants.mount_options",
                        format!("`{opt}` is set through grants.mount_hardening, not as an option"),
                    ));
                }
            }
            let mount_hardening = {
                let d0 = MountHardening::default();
                match &d.grants.mount_hardening {
                    None => d0,
                    Some(h) => MountHardening {
                        nosuid: h.nosuid.unwrap_or(d0.nosuid),
                        nodev: h.nodev.unwrap_or(d0.nodev),
                        noexec: h.noexec.unwrap_or(d0.noexec),
                    },
                }
            };
            let netfs = match d.grants.netfs {
                None => None,
                Some(n) => Some(netfs_grant(n).map_err(|(key, m)| invalid(key, m))?),
            };
            let tmpfs = d.grants.tmpfs.map(|t| TmpfsGrant {
                max_bytes: t.max_bytes,
            });
            let lvm = match d.grants.lvm {
                None => None,
                Some(l) => {
                    let mut groups: Vec<LvmGroupGrant> = Vec::new();
                    for g in l.groups {
                        let vg = crate::sys::lvm::VgName::parse(&g.name)
                            .map_err(|m| invalid("grants.lvm.groups", m))?;
                        if groups.iter().any(|x| x.vg == vg) {
                            return Err(invalid(
                                "grants.lvm.groups",
                                format!("`{}` is granted twice", g.name),
                            ));
                        }
                        let thin_pools = g
                            .thin_pools
                            .iter()
                            .map(|p| crate::sys::lvm::LvName::parse(p))
                            .collect::<Result<_, _>>()
                            .map_err(|m| invalid("grants.lvm.groups", m))?;
                        groups.push(LvmGroupGrant {
                            vg,
                            thin_pools,
                            max_bytes: g.max_bytes,
                        });
                    }
                    Some(LvmGrant { groups })
                }
            };
            let defaults = Limits::default();
            let limits = Limits {
                memory_bytes: d.limits.memory_bytes.unwrap_or(defaults.memory_bytes),
                deadline_ms: d.limits.deadline_ms.unwrap_or(defaults.deadline_ms),
                concurrency: d.limits.concurrency.unwrap_or(defaults.concurrency),
            };
            if limits.memory_bytes < (1 << 20) || limits.memory_bytes > (4 << 30) {
                return Err(invalid(
                    "limits.memory_bytes",
                    "must be between 1 MiB and 4 GiB".into(),
                ));
            }
            if limits.deadline_ms == 0 || limits.concurrency == 0 {
                return Err(invalid(
                    "limits",
                    "deadline_ms and concurrency must be positive".into(),
                ));
            }
            // Every call in flight holds a pooled instance; the pool has a ceiling.
            let in_flight: u64 = drivers
                .iter()
                .map(|x| u64::from(x.limits.concurrency))
                .sum::<u64>()
                + u64::from(limits.concurrency);
            if in_flight > u64::from(MAX_POOLED_INSTANCES) {
                return Err(invalid(
                    "limits.concurrency",
                    format!(
                        "the drivers' calls in flight add up to {in_flight}, over the \
                         {MAX_POOLED_INSTANCES} instances one host pools"
                    ),
                ));
            }
            let csi = match d.csi {
                None => None,
                Some(c) => {
                    let name = CsiName::parse(&c.name).map_err(|m| invalid("csi.name", m))?;
                    let socket_mode = match c.socket_mode {
                        None => 0o660,
                        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                            .ok()
                            .filter(|m| *m <= 0o777)
                            .ok_or_else(|| {
                                invalid(
                                    "csi.socket_mode",
                                    format!("`{m}` is not an octal mode like \"0660\""),
                                )
                            })?,
                    };
                    let socket = c.socket.map(anchor).unwrap_or_else(|| {
                        host.kubelet_root
                            .join("plugins")
                            .join(name.as_str())
                            .join("csi.sock")
                    });
                    let registration_socket = host.kubelet_registration.then(|| {
                        host.kubelet_root
                            .join("plugins_registry")
                            .join(format!("{}-reg.sock", name.as_str()))
                    });
                    if let Some(id) = &c.node_id {
                        if id.is_empty() || id.len() > 256 {
                            return Err(invalid("csi.node_id", "must be 1 to 256 bytes".into()));
                        }
                    }
                    Some(CsiSettings {
                        name,
                        socket,
                        socket_mode,
                        node_id: c.node_id,
                        registration_socket,
                    })
                }
            };
            if let Some(c) = &csi {
                let clash = drivers
                    .iter()
                    .filter_map(|x| x.csi.as_ref())
                    .any(|x| x.socket == c.socket || x.name == c.name);
                if clash {
                    return Err(invalid(
                        "csi",
                        "name or socket already used by another driver".into(),
                    ));
                }
            }
            let flex = match d.flex {
                None => None,
                Some(f) => {
                    let name = FlexName::parse(&f.name).map_err(|m| invalid("flex.name", m))?;
                    if drivers.iter().any(|x| x.flex.as_ref() == Some(&name)) {
                        return Err(invalid(
                            "flex.name",
                            "already used by another driver".into(),
                        ));
                    }
                    Some(name)
                }
            };
            if d.grants.device.is_some() && storage.is_none() {
                return Err(invalid(
                    "grants.device",
                    "backing files live in the storage root: grant storage too".into(),
                ));
            }
            drivers.push(DriverPolicy {
                name,
                component: anchor(d.component),
                pin,
                grants: Grants {
                    storage,
                    mount: d.grants.mount,
                    fs_types,
                    mount_options: d.grants.mount_options.into_iter().collect(),
                    state_quota_bytes: d.grants.state_quota_bytes,
                    secrets: d.grants.secrets,
                    device: d.grants.device.map(|g| DeviceGrant {
                        max_file_bytes: g.max_file_bytes,
                        max_devices: g.max_devices.unwrap_or(DEFAULT_MAX_DEVICES),
                    }),
                    mount_hardening,
                    netfs,
                    tmpfs,
                    lvm,
                },
                limits,
                csi,
                flex,
            });
        }
        Ok(Self {
            source: path.to_owned(),
            host,
            drivers,
        })
    }

    /// The policy of one driver, by name.
    pub fn driver(&self, name: &str) -> Option<&DriverPolicy> {
        self.drivers.iter().find(|d| d.name.as_str() == name)
    }
}

/// Validates `grants.netfs`: every server an address, a range or a host
/// name; at least one address or range (names are checked against them
/// after resolution, so names alone could reach nothing); exports absolute;
/// versions and option names from the host's vocabulary.
fn netfs_grant(n: file::NetfsEntry) -> Result<NetfsGrant, (&'static str, String)> {
    use crate::nfs::{check_host_name, AddressRange, ExportPath, NfsVersion, OPTION_NAMES};
    let mut grant = NetfsGrant {
        names: BTreeSet::new(),
        addresses: Vec::new(),
        exports: Vec::new(),
        versions: BTreeSet::new(),
        options: BTreeSet::new(),
        access: n.access,
    };
    for s in &n.servers {
        match AddressRange::parse(s) {
            Ok(range) => grant.addresses.push(range),
            Err(_) => {
                check_host_name(s).map_err(|m| ("grants.netfs.servers", m))?;
                grant.names.insert(s.clone());
            }
        }
    }
    if grant.addresses.is_empty() {
        return Err((
            "grants.netfs.servers",
            "needs at least one address or range: a named server's address is checked against them"
                .into(),
        ));
    }
    for e in &n.exports {
        grant
            .exports
            .push(ExportPath::parse(e).map_err(|m| ("grants.netfs.exports", m))?);
    }
    if grant.exports.is_empty() {
        return Err(("grants.netfs.exports", "grants no export".into()));
    }
    for v in &n.versions {
        grant
            .versions
            .insert(NfsVersion::parse(v).map_err(|m| ("grants.netfs.versions", m))?);
    }
    if grant.versions.is_empty() {
        return Err(("grants.netfs.versions", "grants no version".into()));
    }
    for o in &n.options {
        let name = OPTION_NAMES.iter().find(|x| **x == o).ok_or_else(|| {
            (
                "grants.netfs.options",
                format!(
                    "`{o}` is not an NFS option the host passes (one of: {})",
                    OPTION_NAMES.join(", ")
                ),
            )
        })?;
        grant.options.insert(name);
    }
    Ok(grant)
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(Path::new("/etc/wasmvol/policy.toml"), text)
    }

    #[test]
    fn parses_a_full_driver_and_anchors_relative_paths() {
        let p = parse(&format!(
            r#"
[host]
state_dir = "state"

[[driver]]
name = "hostpath"
component = "hostpath.wasm"
sha256 = "{DIGEST}"
[driver.grants]
mount = true
state_quota_bytes = 4096
storage = {{ root = "/srv/vols", access = "read-write" }}
[driver.limits]
deadline_ms = 500
"#
        ))
        .unwrap();
        let d = &p.drivers[0];
        assert_eq!(d.component, Path::new("/etc/wasmvol/hostpath.wasm"));
        assert_eq!(p.host.cache_dir, Path::new("/etc/wasmvol/state/cache"));
        assert!(d.grants.mount);
        assert!(!d.grants.secrets, "secrets are denied unless granted");
        assert_eq!(d.limits.deadline_ms, 500);
        assert_eq!(d.limits.memory_bytes, Limits::default().memory_bytes);
        let storage = d.grants.storage.as_ref().unwrap();
        assert_eq!(storage.access, StorageAccess::ReadWrite);
    }

    #[test]
    fn calls_in_flight_across_drivers_must_fit_the_pool() {
        let driver = |name: &str, concurrency: u32| {
            format!(
                "[[driver]]\nname = \"{name}\"\ncomponent = \"{name}.wasm\"\nsha256 = \"{DIGEST}\"\n[driver.limits]\nconcurrency = {concurrency}\n"
            )
        };
        let host = "[host]\nstate_dir = \"/x\"\n";
        let half = MAX_POOLED_INSTANCES / 2;
        let fits = format!("{host}{}{}", driver("a", half), driver("b", half));
        assert_eq!(parse(&fits).unwrap().drivers.len(), 2);
        let over = format!("{host}{}{}", driver("a", half), driver("b", half + 1));
        let msg = parse(&over).unwrap_err().to_string();
        assert!(
            msg.contains(
                "driver `b`: limits.concurrency: the drivers' calls in flight add up to 1025"
            ),
            "{msg}"
        );
    }

    #[test]
    fn mount_hardening_defaults_on_opts_out_per_flag_and_cannot_be_undone_by_options() {
        let base = format!(
            "[host]\nstate_dir = \"/x\"\n[[driver]]\nname = \"a\"\ncomponent = \"a.wasm\"\nsha256 = \"{DIGEST}\"\n[driver.grants]\n"
        );
        let p = parse(&base).unwrap();
        assert_eq!(
            p.drivers[0].grants.mount_hardening,
            MountHardening::default()
        );
        assert_eq!(MountHardening::default().names(), ["nosuid", "nodev"]);
        let p = parse(&format!(
            "{base}mount_hardening = {{ nodev = false, noexec = true }}\n"
        ))
        .unwrap();
        assert_eq!(
            p.drivers[0].grants.mount_hardening.names(),
            ["nosuid", "noexec"]
        );
        for undo in ["suid", "dev", "exec", "nodev"] {
            let err = parse(&format!("{base}mount_options = [\"{undo}\"]\n")).unwrap_err();
            assert!(err.to_string().contains("mount_hardening"), "{undo}: {err}");
        }
        // Only filesystems the host makes and mounts itself.
        let err = parse(&format!("{base}fs_types = [\"btrfs\"]\n")).unwrap_err();
        assert!(err.to_string().contains("one of: ext4, xfs"), "{err}");
        let p = parse(&format!("{base}fs_types = [\"xfs\", \"ext4\"]\n")).unwrap();
        assert_eq!(
            p.drivers[0]
                .grants
                .fs_types
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            [Fs::Ext4, Fs::Xfs]
        );
    }

    #[test]
    fn a_policy_file_built_in_code_reads_back_as_written() {
        use file::*;
        let built = PolicyFile {
            host: HostEntry {
                state_dir: "/var/lib/wasmvol".into(),
                ..HostEntry::default()
            },
            drivers: vec![DriverEntry {
                name: "hostpath".into(),
                component: "/opt/hostpath.wasm".into(),
                sha256: Some(DIGEST.into()),
                grants: GrantsEntry {
                    mount: true,
                    storage: Some(StorageEntry {
                        root: "/srv/hp".into(),
                        access: StorageAccess::ReadOnly,
                        wasi_preopen: false,
                    }),
                    mount_hardening: Some(HardeningEntry {
                        noexec: Some(true),
                        ..HardeningEntry::default()
                    }),
                    ..GrantsEntry::default()
                },
                flex: Some(FlexEntry {
                    name: "wasmvol/hostpath".into(),
                }),
                ..DriverEntry::default()
            }],
        };
        let p = parse(&built.to_toml()).unwrap();
        let d = &p.drivers[0];
        assert_eq!(d.name.as_str(), "hostpath");
        assert!(d.grants.mount && d.grants.state_quota_bytes.is_none());
        assert_eq!(
            d.grants.storage.as_ref().unwrap().access,
            StorageAccess::ReadOnly
        );
        assert_eq!(
            d.grants.mount_hardening.names(),
            ["nosuid", "nodev", "noexec"]
        );
        assert_eq!(d.flex.as_ref().unwrap().full(), "wasmvol/hostpath");
    }

    #[test]
    fn a_typo_names_line_and_column() {
        let err = parse("[host]\nstate_dir = \"/x\"\nstat_dir = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/etc/wasmvol/policy.toml:3:1: unknown field `stat_dir`"),
            "{msg}"
        );
    }

    #[test]
    fn a_bad_digest_names_driver_and_field() {
        let err = parse(
            "[host]\nstate_dir = \"/x\"\n[[driver]]\nname = \"a\"\ncomponent = \"a.wasm\"\nsha256 = \"abc\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("driver `a`: sha256:"),
            "{}",
            err.to_string()
        );
    }

    #[test]
    fn csi_settings_default_and_validate() {
        let base = format!(
            "[host]\nstate_dir = \"/x\"\n[[driver]]\nname = \"a\"\ncomponent = \"a.wasm\"\nsha256 = \"{DIGEST}\"\n[driver.csi]\n"
        );
        let p = parse(&format!("{base}name = \"a.csi.example.com\"\n")).unwrap();
        let csi = p.drivers[0].csi.as_ref().unwrap();
        assert_eq!(
            csi.socket,
            Path::new("/var/lib/kubelet/plugins/a.csi.example.com/csi.sock")
        );
        assert_eq!(csi.socket_mode, 0o660);
        let p = parse(&format!("{base}name = \"a\"\nsocket_mode = \"0600\"\n")).unwrap();
        assert_eq!(p.drivers[0].csi.as_ref().unwrap().socket_mode, 0o600);
        let err = parse(&format!("{base}name = \"-bad\"\n")).unwrap_err();
        assert!(err.to_string().contains("csi.name"), "{err}");
        let err = parse(&format!("{base}name = \"a\"\nsocket_mode = \"rw\"\n")).unwrap_err();
        assert!(err.to_string().contains("csi.socket_mode"), "{err}");
    }

    #[test]
    fn flex_names_are_vendor_slash_name() {
        let n = FlexName::parse("k8s/nfs").unwrap();
        assert_eq!(
            (n.full(), n.dir_name()),
            ("k8s/nfs".into(), "k8s~nfs".into())
        );
        for bad in ["nfs", "a/b/c", "/x", "x/", "a b/c", "../x", "a/.."] {
            assert!(FlexName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn driver_names_are_validated() {
        assert!(DriverName::parse("host-path.v1").is_ok());
        for bad in ["", "Host", "-x", "a/b", "a b", &"x".repeat(64)] {
            assert!(DriverName::parse(bad).is_err(), "{bad}");
        }
    }
}
