//! Shared fixtures for wasmvol's end-to-end and adversarial tests.
//!
//! The tests are privileged: they mount for real. They must run as root;
//! each test thread enters a private mount namespace of its own; anywhere
//! they cannot, they fail loudly instead of skipping. Every fixture unmounts whatever was
//! mounted beneath it when dropped, even when the test panics.

pub mod csi_requests;
pub mod kill_matrix;
pub mod real_kernel;
pub mod spec_sweep;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmvol::policy::Policy;
use wasmvol::runtime::Runtime;

/// The built component of a driver (see `scripts/build-plugins.sh`).
pub fn component(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/components")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Compiled components shared by every test (keyed by digest, so safe to share).
pub fn shared_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifact-cache")
}

/// How long a test waits for `wasmvol serve` to open its socket: 30 s, or
/// `WASMVOL_TEST_SERVE_TIMEOUT_S` (the real-kernel VM, where software
/// emulation compiles a component cold in tens of seconds).
pub fn serve_start_timeout() -> std::time::Duration {
    let secs = std::env::var("WASMVOL_TEST_SERVE_TIMEOUT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    std::time::Duration::from_secs(secs)
}

/// Path of the `wasmvol` binary built for these tests.
pub fn wasmvol_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("wasmvol");
    assert!(
        bin.exists(),
        "{} is missing: build it first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Moves the calling test thread into a mount namespace of its own, with
/// no propagation to the host, or fails the test. Mounts made by the test
/// (and by processes it spawns) live and die with that namespace, so even a
/// panicking test leaves no mount behind on the machine.
pub fn require_privileged() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "privileged test: run as root (scripts/test.sh); it must not be skipped"
    );
    wasmvol::sys::mount::enter_private_mount_namespace()
        .expect("privileged test: cannot enter a private mount namespace");
}

/// Mount points currently at or beneath `dir`, as the calling thread sees them.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    wasmvol::sys::mount::mounts_under(dir).expect("mountinfo")
}

/// Sha-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read component")))
}

/// Grants of a fixture's driver, written into its policy.
#[derive(Clone, Debug)]
pub struct FixtureGrants {
    /// `grants.mount`.
    pub mount: bool,
    /// `grants.storage.access` of the fixture's root (`read-write`, `read-only`), or none.
    pub storage: Option<&'static str>,
    /// `grants.storage.wasi_preopen`.
    pub wasi_preopen: bool,
    /// `grants.state_quota_bytes`.
    pub state_quota: Option<u64>,
    /// `grants.secrets`.
    pub secrets: bool,
    /// `limits.deadline_ms`.
    pub deadline_ms: u64,
    /// `limits.memory_bytes`.
    pub memory_bytes: u64,
    /// Calls in flight at once (`limits.concurrency`).
    pub concurrency: u32,
    /// Offer the driver over CSI on `<fixture>/csi.sock`.
    pub csi: bool,
    /// Offer the driver to Flex shims as `wasmvol/<driver>` on `<fixture>/flex.sock`.
    pub flex: bool,
    /// Grant the device capability (ext4 and xfs, files up to 1 GiB).
    pub device: bool,
    /// `grants.netfs`, as written.
    pub netfs: Option<wasmvol::policy::file::NetfsEntry>,
    /// `grants.tmpfs.max_bytes`.
    pub tmpfs_max_bytes: Option<u64>,
    /// The Flex driver name, when not `wasmvol/<driver>` (e.g. the classic `k8s/nfs`).
    pub flex_name: Option<&'static str>,
    /// `grants.lvm`, as written (with ext4 and xfs granted for its volumes).
    pub lvm: Option<wasmvol::policy::file::LvmEntry>,
    /// Register with kubelet under this kubelet root (`[host] kubelet_root`,
    /// `kubelet_registration = true`); the CSI socket then takes its
    /// default path beneath the root.
    pub kubelet_root: Option<PathBuf>,
    /// Serve `/healthz` and `/metrics` on `<fixture>/http.sock` (`[host] http`).
    pub http: bool,
}

impl Default for FixtureGrants {
    fn default() -> Self {
        Self {
            mount: true,
            storage: Some("read-write"),
            wasi_preopen: false,
            state_quota: Some(1 << 20),
            secrets: false,
            deadline_ms: 5_000,
            memory_bytes: 64 << 20,
            concurrency: 8,
            csi: false,
            flex: false,
            device: false,
            netfs: None,
            tmpfs_max_bytes: None,
            flex_name: None,
            lvm: None,
            kubelet_root: None,
            http: false,
        }
    }
}

/// A private directory with a storage root, a targets folder, host state and
/// a policy for one driver. Unmounts everything beneath it on drop.
pub struct Fixture {
    /// The private directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The driver's component and policy name.
    pub driver: String,
    /// Where its policy is written.
    pub policy_path: PathBuf,
}

impl Fixture {
    /// A fixture for the driver built as `component_name`, with `grants`.
    pub fn new(component_name: &str, grants: FixtureGrants) -> Self {
        require_privileged();
        let dir = tempfile::Builder::new()
            .prefix("wasmvol-test-")
            .tempdir()
            .expect("tempdir");
        for sub in ["root", "targets", "state", "outside"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let component = component(component_name);
        let policy_path = dir.path().join("policy.toml");
        let f = Self {
            dir,
            driver: component_name.to_owned(),
            policy_path,
        };
        f.write_policy(&component, &sha256_file(&component), &grants);
        f
    }

    /// Rewrites the policy (e.g. with another digest or grants).
    pub fn write_policy(&self, component: &Path, sha256: &str, g: &FixtureGrants) {
        self.write_pinned(component, Some(sha256.to_owned()), Vec::new(), g);
    }

    /// Rewrites the policy with the component pinned by signer (`signed_by`)
    /// and, when given, also by digest.
    pub fn write_signed_policy(
        &self,
        component: &Path,
        signed_by: &[String],
        sha256: Option<&str>,
        g: &FixtureGrants,
    ) {
        self.write_pinned(component, sha256.map(str::to_owned), signed_by.to_vec(), g);
    }

    fn write_pinned(
        &self,
        component: &Path,
        sha256: Option<String>,
        signed_by: Vec<String>,
        g: &FixtureGrants,
    ) {
        use wasmvol::policy::file::*;
        use wasmvol::policy::StorageAccess;
        let mut grants = GrantsEntry {
            mount: g.mount,
            secrets: g.secrets,
            state_quota_bytes: g.state_quota,
            storage: g.storage.map(|access| StorageEntry {
                root: self.root(),
                access: match access {
                    "read-only" => StorageAccess::ReadOnly,
                    "read-write" => StorageAccess::ReadWrite,
                    other => panic!("storage access `{other}`"),
                },
                wasi_preopen: g.wasi_preopen,
            }),
            ..GrantsEntry::default()
        };
        if g.device {
            grants.device = Some(DeviceEntry {
                max_file_bytes: 1 << 30,
                max_devices: None,
            });
            grants.fs_types = if self.driver == "adversary" {
                vec!["ext4".into()]
            } else {
                vec!["ext4".into(), "xfs".into()]
            };
            grants.mount_options = vec!["noatime".into(), "nodiratime".into()];
        }
        grants.netfs = g.netfs.clone();
        if let Some(lvm) = &g.lvm {
            grants.lvm = Some(lvm.clone());
            grants.fs_types = vec!["ext4".into(), "xfs".into()];
        }
        grants.tmpfs = g.tmpfs_max_bytes.map(|max_bytes| TmpfsEntry { max_bytes });
        let policy = PolicyFile {
            host: HostEntry {
                state_dir: self.dir.path().join("state"),
                cache_dir: Some(shared_cache_dir()),
                flex_socket: Some(self.flex_socket()),
                kubelet_root: g.kubelet_root.clone(),
                kubelet_registration: g.kubelet_root.is_some(),
                http: g.http.then(|| self.http_socket().display().to_string()),
                ..HostEntry::default()
            },
            drivers: vec![DriverEntry {
                name: self.driver.clone(),
                component: component.to_owned(),
                sha256,
                signed_by,
                grants,
                limits: LimitsEntry {
                    deadline_ms: Some(g.deadline_ms),
                    memory_bytes: Some(g.memory_bytes),
                    concurrency: Some(g.concurrency),
                },
                csi: g.csi.then(|| CsiEntry {
                    name: format!("{}.csi.wasmvol.io", self.driver),
                    socket: g.kubelet_root.is_none().then(|| self.csi_socket()),
                    node_id: Some("test-node".into()),
                    ..CsiEntry::default()
                }),
                flex: g.flex.then(|| FlexEntry {
                    name: g
                        .flex_name
                        .map_or_else(|| format!("wasmvol/{}", self.driver), str::to_owned),
                }),
            }],
        };
        std::fs::write(&self.policy_path, policy.to_toml()).unwrap();
    }

    /// Rewrites the policy for this fixture's own component with other grants.
    pub fn regrant(&self, grants: &FixtureGrants) {
        let c = component(&self.driver);
        self.write_policy(&c, &sha256_file(&c), grants);
    }

    /// The policy as the host parses it.
    pub fn policy(&self) -> Policy {
        Policy::load(&self.policy_path).expect("policy")
    }

    /// Starts a runtime with this fixture's driver.
    pub fn runtime(&self) -> Runtime {
        Runtime::start(&self.policy(), None).expect("runtime starts")
    }

    /// Where the host serves Flex shims.
    pub fn flex_socket(&self) -> PathBuf {
        self.dir.path().join("flex.sock")
    }

    /// Where the host serves `/healthz` and `/metrics` (with `FixtureGrants::http`).
    pub fn http_socket(&self) -> PathBuf {
        self.dir.path().join("http.sock")
    }

    /// Where the CSI socket of this fixture's driver is.
    pub fn csi_socket(&self) -> PathBuf {
        self.dir.path().join("csi.sock")
    }

    /// The driver's storage root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A directory outside the root, for escape attempts to aim at.
    pub fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    /// A fresh target directory, as kubelet would create for NodePublish.
    pub fn target(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("targets").join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// The audit log, one JSON value per line.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let path = self.dir.path().join("state/audit.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// Mounts beneath the fixture right now.
    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(self.dir.path())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Innermost first; lazy detach so a busy mount cannot keep us from cleaning up.
        let mut mounts = self.mounts();
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        // Loop devices are not namespaced: detach every one backed by our files.
        let _ = wasmvol::capability::device::detach_all_under(self.dir.path());
    }
}

/// A `wasmvol serve` process, started the way kubelet meets it: a separate
/// process serving a CSI socket. Stopped (SIGTERM, then SIGKILL) on drop.
pub struct ServeProcess {
    child: std::process::Child,
    /// The socket it was awaited on.
    pub socket: PathBuf,
}

impl ServeProcess {
    /// Starts `wasmvol serve` on the fixture's policy and waits for its CSI socket.
    pub fn start(f: &Fixture) -> Self {
        Self::start_on(f, &f.csi_socket())
    }

    /// Starts `wasmvol serve` and waits until `socket` answers.
    pub fn start_on(f: &Fixture, socket: &Path) -> Self {
        let mut cmd = std::process::Command::new(wasmvol_bin());
        cmd.env("RUST_LOG", "warn");
        Self::spawn(f, socket, cmd)
    }

    /// Starts `wasmvol serve` with its stderr (its tracing) in `log`, at
    /// `rust_log`, or at its own default level when that is `None`.
    pub fn start_logging(f: &Fixture, rust_log: Option<&str>, log: &Path) -> Self {
        let mut cmd = std::process::Command::new(wasmvol_bin());
        match rust_log {
            Some(level) => cmd.env("RUST_LOG", level),
            None => cmd.env_remove("RUST_LOG"),
        };
        cmd.stderr(std::fs::File::create(log).expect("serve log file"));
        Self::spawn(f, &f.csi_socket(), cmd)
    }

    /// Starts `wasmvol serve` on the fixture's policy as `configure` sets the
    /// command up (limits, environment), and waits until `socket` answers.
    pub fn start_with(
        f: &Fixture,
        socket: &Path,
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Self {
        let mut cmd = std::process::Command::new(wasmvol_bin());
        cmd.env("RUST_LOG", "warn");
        configure(&mut cmd);
        Self::spawn(f, socket, cmd)
    }

    /// CPU time (user and system) the host process has used so far.
    pub fn cpu_time(&self) -> std::time::Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("/proc stat");
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap_or(100) as u64;
        std::time::Duration::from_millis(ticks * 1000 / hz)
    }

    /// Sends `signal` to the host process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("signal wasmvol serve");
    }

    /// The host process id.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    fn spawn(f: &Fixture, socket: &Path, mut cmd: std::process::Command) -> Self {
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(&f.policy_path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn wasmvol serve");
        let socket = socket.to_owned();
        let deadline = std::time::Instant::now() + serve_start_timeout();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "wasmvol serve exited ({status}) before opening {}",
                    socket.display()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "wasmvol serve never opened {}",
                socket.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Self { child, socket }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM);
        for _ in 0..500 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Leaves a stale socket file at `path`: bound, then closed. A child
/// another test spawns at that moment holds a copy of the listener until
/// it execs, so this waits until connecting is refused; from then on the
/// first connection that succeeds is to whoever binds the path next.
pub fn stale_socket(path: &Path) {
    drop(std::os::unix::net::UnixListener::bind(path).expect("bind the stale socket"));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(path).is_ok() {
        assert!(
            std::time::Instant::now() < until,
            "{} stays served",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A gRPC channel to a CSI unix socket.
pub async fn csi_channel(socket: &Path) -> tonic::transport::Channel {
    wasmvol::conformance::connect(socket, None)
        .await
        .expect("connect to the CSI socket")
}

/// GET `path` over the `[host] http` unix socket at `socket`: the status
/// code and the body.
pub fn http_get(socket: &Path, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("the http socket");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: wasmvol\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

/// Loop devices whose backing file lies under `dir`.
pub fn loops_under(dir: &Path) -> Vec<String> {
    wasmvol::capability::device::loops_under(dir).expect("/sys/block")
}

/// Execs an installed Flex shim as kubelet does (no shell, no stdin) and
/// returns the one JSON object it printed.
pub fn exec_flex_shim(shim: &Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(shim)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("exec the shim");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("kubelet could not parse {:?}: {e}", out.stdout))
}

/// Installs the Flex shim for the fixture's Flex driver name with `wasmvol
/// flex install` under `<fixture>/plugins`, calling the fixture's Flex
/// socket; returns its path.
pub fn install_flex_shim(f: &Fixture) -> PathBuf {
    let flex = f.policy().drivers[0]
        .flex
        .clone()
        .expect("the fixture offers its driver over Flex");
    let plugins = f.dir.path().join("plugins");
    let mut cmd = std::process::Command::new(wasmvol_bin());
    // The statically linked shim scripts/build-shim.sh makes, as deployed; else the default.
    let static_shim =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/flex-shim/wasmvol-flex");
    if static_shim.exists() {
        cmd.arg("flex")
            .arg("install")
            .arg("--shim")
            .arg(&static_shim);
    } else {
        cmd.args(["flex", "install"]);
    }
    let out = cmd
        .arg("--driver")
        .arg(flex.full())
        .arg("--plugin-dir")
        .arg(&plugins)
        .arg("--socket")
        .arg(f.flex_socket())
        .output()
        .expect("run wasmvol flex install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    plugins.join(flex.dir_name()).join(&flex.name)
}

/// Per-mount options (mountinfo's sixth field, e.g. `rw,nosuid,nodev`) of
/// the top mount at `path`, as the calling thread sees it.
pub fn mount_options(path: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
    let line = info
        .lines()
        .rev()
        .find(|l| {
            l.split(' ')
                .nth(4)
                .map(|p| p.replace("\\040", " "))
                .as_deref()
                == path.to_str()
        })
        .unwrap_or_else(|| panic!("nothing is mounted at {}", path.display()));
    line.split(' ')
        .nth(5)
        .expect("mount options")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Whether a device node made in `dir` (the null device, made as root
/// would) can be opened there: never on a `nodev` mount.
pub fn device_node_opens(dir: &Path) -> bool {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let node = dir.join("wasmvol-test-null");
    mknod(
        &node,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .expect("mknod as root");
    let opened = std::fs::OpenOptions::new().write(true).open(&node);
    std::fs::remove_file(&node).unwrap();
    match opened {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => false,
        Err(e) => panic!("opening {}: {e}", node.display()),
    }
}

/// A block volume's node steps done natively with the mount syscalls
/// themselves (the benches' baseline): mount the ext4 on `dev` at
/// `staging` with `flags`, bind it onto `target` by descriptor as the host
/// does, then unmount both.
pub fn native_node_cycle(dev: &Path, staging: &Path, target: &Path, flags: nix::mount::MsFlags) {
    use std::os::fd::AsFd;
    nix::mount::mount(Some(dev), staging, Some("ext4"), flags, None::<&str>).unwrap();
    let s = wasmvol::sys::mount::open_path(staging).unwrap();
    let t = wasmvol::sys::mount::open_path(target).unwrap();
    wasmvol::sys::mount::bind(s.as_fd(), t.as_fd(), Default::default()).unwrap();
    drop((s, t));
    nix::mount::umount(target).unwrap();
    nix::mount::umount(staging).unwrap();
}
