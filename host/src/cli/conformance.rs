//! `wasmvol conformance`: the CSI conformance sweep ([`wasmvol::conformance`])
//! against one component, served by a `wasmvol serve` of its own in a
//! sandbox: a fresh directory (storage root, state, kubelet paths) and a
//! private mount namespace, so nothing the driver mounts reaches the
//! machine, and every mount and loop device is gone when it ends.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use wasmvol::conformance::{self, Profile, Report, Verdict};
use wasmvol::digest::Sha256Digest;
use wasmvol::policy::file::*;
use wasmvol::policy::StorageAccess;

/// What to run the sweep on and how, from the command line.
#[derive(clap::Args)]
pub(crate) struct ConformanceArgs {
    /// The driver component (.wasm).
    component: PathBuf,
    /// Grants for the driver, as a policy's `[driver.grants]` table (TOML);
    /// default: a storage root, state, mounts, loop devices and tmpfs, all
    /// inside the sandbox. Network storage (netfs, lvm) needs this.
    #[arg(long)]
    grants: Option<PathBuf>,
    /// A CreateVolume parameter (a StorageClass's), key=value; repeatable.
    #[arg(long = "parameter", value_parser = key_value)]
    parameters: Vec<(String, String)>,
    /// A mutable parameter the driver accepts, for the ControllerModifyVolume
    /// rows that must succeed, key=value; repeatable.
    #[arg(long = "mutable-parameter", value_parser = key_value)]
    mutable_parameters: Vec<(String, String)>,
    /// The fs type of the mount capability (default: the driver's own).
    #[arg(long, default_value = "")]
    fs_type: String,
    /// Bytes each volume asks for.
    #[arg(long, default_value_t = 32 << 20)]
    size: i64,
    /// The driver does not size its volumes (a directory on a share): skip
    /// the same-name, other-size row.
    #[arg(long)]
    unsized_volumes: bool,
    /// Seconds each call (and the host's start) may take.
    #[arg(long = "timeout", default_value_t = 120)]
    timeout_s: u64,
    /// Output: a table for people, JSON or YAML for tools.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = super::Output::Table)]
    output: super::Output,
}

impl ConformanceArgs {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s)
    }
}

/// Parses `key=value`.
fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}`: expected key=value"))
}

/// The sandbox: a directory only root can enter, removed at the end.
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("wasmvol-conformance-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("{}", dir.display()))?;
        for sub in ["root", "state", "kubelet"] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.join(sub))?;
        }
        Ok(Self { dir })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Whatever a failed run left: innermost mounts first, then loop devices.
        let mut mounts = wasmvol::sys::mount::mounts_under(&self.dir).unwrap_or_default();
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = wasmvol::capability::device::detach_all_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The grants a driver gets when none are given: everything a local driver
/// may use, scoped to the sandbox.
fn sandbox_grants(root: &Path) -> GrantsEntry {
    GrantsEntry {
        storage: Some(StorageEntry {
            root: root.to_owned(),
            access: StorageAccess::ReadWrite,
            wasi_preopen: false,
        }),
        mount: true,
        fs_types: vec!["ext4".into(), "xfs".into()],
        mount_options: vec!["noatime".into()],
        state_quota_bytes: Some(1 << 20),
        device: Some(DeviceEntry {
            max_file_bytes: 1 << 30,
            max_devices: None,
        }),
        tmpfs: Some(TmpfsEntry {
            max_bytes: 64 << 20,
        }),
        ..GrantsEntry::default()
    }
}

/// The policy serving the component alone on `<sandbox>/csi.sock`.
fn policy(sandbox: &Path, args: &ConformanceArgs) -> anyhow::Result<PolicyFile> {
    let bytes =
        std::fs::read(&args.component).with_context(|| format!("{}", args.component.display()))?;
    let grants = match &args.grants {
        None => sandbox_grants(&sandbox.join("root")),
        Some(file) => {
            let text =
                std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
            toml::from_str(&text).with_context(|| {
                format!("{}: grants, as a policy's [driver.grants]", file.display())
            })?
        }
    };
    Ok(PolicyFile {
        host: HostEntry {
            state_dir: sandbox.join("state"),
            ..HostEntry::default()
        },
        drivers: vec![DriverEntry {
            name: "driver".into(),
            component: std::fs::canonicalize(&args.component)?,
            sha256: Some(Sha256Digest::of(&bytes).to_hex()),
            signed_by: Vec::new(),
            grants,
            limits: LimitsEntry {
                deadline_ms: Some(args.timeout().as_millis() as u64),
                ..LimitsEntry::default()
            },
            csi: Some(CsiEntry {
                name: "conformance.wasmvol.io".into(),
                socket: Some(sandbox.join("csi.sock")),
                node_id: Some("conformance-node".into()),
                ..CsiEntry::default()
            }),
            flex: None,
        }],
    })
}

/// A `wasmvol serve` child in this thread's mount namespace; stopped on drop.
struct Serve(Child);

impl Serve {
    fn start(config: &Path, socket: &Path, log: &Path, timeout: Duration) -> anyhow::Result<Self> {
        let child = Command::new(std::env::current_exe()?)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("start wasmvol serve")?;
        let mut serve = Self(child);
        let deadline = Instant::now() + timeout;
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            if let Some(status) = serve.0.try_wait()? {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                bail!(
                    "wasmvol serve refused the component ({status}): {}",
                    log.trim()
                );
            }
            if Instant::now() > deadline {
                bail!("wasmvol serve did not open its socket in {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(serve)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the sweep; `Ok(false)` when a row failed. Prints the report.
pub(crate) fn conformance(args: ConformanceArgs) -> anyhow::Result<bool> {
    if !nix::unistd::geteuid().is_root() {
        bail!("conformance mounts for real, in a mount namespace of its own: run it as root");
    }
    // Before any thread starts: the namespace is this thread's, and the
    // serve child and the sweep's own checks live in it.
    wasmvol::sys::mount::enter_private_mount_namespace()
        .context("enter a private mount namespace")?;
    let sandbox = Sandbox::new()?;
    let config = sandbox.dir.join("policy.toml");
    std::fs::write(&config, policy(&sandbox.dir, &args)?.to_toml())?;
    let socket = sandbox.dir.join("csi.sock");
    let serve = Serve::start(
        &config,
        &socket,
        &sandbox.dir.join("serve.log"),
        args.timeout(),
    )?;
    let profile = Profile {
        parameters: args.parameters.iter().cloned().collect::<HashMap<_, _>>(),
        mutable_parameters: args.mutable_parameters.iter().cloned().collect(),
        fs_type: args.fs_type.clone(),
        size: args.size,
        sizes_volumes: !args.unsized_volumes,
        kubelet_dir: sandbox.dir.join("kubelet"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut report: Report = rt.block_on(async {
        let channel = conformance::connect(&socket, Some(args.timeout()))
            .await
            .map_err(|e| anyhow!("{}", e.message()))?;
        anyhow::Ok(conformance::run(channel, profile).await)
    })?;
    drop(serve);
    leftover_rows(&mut report, &sandbox.dir);
    args.output.print(&report, || report.table())?;
    Ok(report.passed())
}

/// Rows for what the driver left behind once its host stopped.
fn leftover_rows(report: &mut Report, dir: &Path) {
    let mounts = wasmvol::sys::mount::mounts_under(dir).unwrap_or_default();
    let verdict = if mounts.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed(format!("still mounted: {mounts:?}"))
    };
    report.push("(sweep)", "every mount made is gone", verdict);
    let loops = wasmvol::capability::device::loops_under(dir).unwrap_or_default();
    let verdict = if loops.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed(format!("still attached: {loops:?}"))
    };
    report.push("(sweep)", "every loop device attached is detached", verdict);
}
